import sys, json, collections
import numpy as np
out = sys.argv[1]
S = json.load(open(f"{out}/sched.json"))
cl = json.load(open(f"{out}/cluster.json")); node_pid = {n["pid"]: n["name"] for n in cl["nodes"]}
iv = {int(k): v for k, v in S["intervals"].items()}; tid_pid = {int(k): v for k, v in S["tid_pid"].items()}; comm = {int(k): v for k, v in S["tid_comm"].items()}
def kind(tid):
    pid = tid_pid.get(tid); c = comm.get(tid, "")
    if tid == pid: return "main"
    if c.startswith("event_engine"): return "event_engine"
    if c.startswith(("python", "Thread")): return "py"
    return "grpc"
waits = collections.defaultdict(list); runs = collections.defaultdict(list)
for tid, L in iv.items():
    pid = tid_pid.get(tid)
    grp = ("node:" if pid in node_pid else comm.get(pid, "?")[:10] + ":") + kind(tid)
    for x, y, st, why in L:
        if st == "runnable": waits[grp].append((y - x, why))
        if st == "running": runs[grp].append(y - x)
for g in sorted(waits, key=lambda g: -len(waits[g]))[:14]:
    w = np.array([a for a, _ in waits[g]]) * 1e3; r = np.array(runs[g]) * 1e3
    pre = np.array([a for a, why in waits[g] if why == "preempted"]) * 1e3
    print(f"{g:28s} waits n {len(w):6d} p50 {np.percentile(w,50):6.2f} p90 {np.percentile(w,90):6.2f} p99 {np.percentile(w,99):6.2f} max {w.max():7.1f} ms sum {w.sum()/1e3:6.2f}s | runs p50 {np.percentile(r,50):5.2f} p99 {np.percentile(r,99):6.2f} sum {r.sum()/1e3:5.2f}s | preempted {len(pre)}")
