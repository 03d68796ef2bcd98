import sys, json, collections
import numpy as np
out, run = sys.argv[1], sys.argv[2]
S = json.load(open(f"{out}/sched.json"))
cl = json.load(open(f"{out}/cluster.json")); node_pid = {n["pid"]: n["name"] for n in cl["nodes"]}
iv = {int(k): v for k, v in S["intervals"].items()}; tid_pid = {int(k): v for k, v in S["tid_pid"].items()}; comm = {int(k): v for k, v in S["tid_comm"].items()}
t0 = S["t0"]; summ = json.load(open(f"{run}/summary.json")); W = summ["window"] if "window" in summ else None
a, b = t0 + 1.0, t0 + 12.0  # measured window (warmup 1 s, run_time 12 s)
run = collections.Counter(); wait = collections.Counter()
lg = None
for tid, L in iv.items():
    pid = tid_pid.get(tid)
    if pid in node_pid: g = "cluster nodes"
    else: g = comm.get(pid, comm.get(tid, "?"))
    if tid == 0 or g.startswith("swapper"): continue
    for x, y, st, why in L:
        lo, hi = max(a, x), min(b, y)
        if hi <= lo: continue
        if st == "running": run[g] += hi - lo
        elif st == "runnable": wait[g] += hi - lo
T = b - a
print(f"window {T:.1f} s; CPU capacity {2*T:.1f} cpu-s; used {sum(run.values()):.2f}")
for g, v in run.most_common(15): print(f"  {g:22s} run {v:6.2f} cpu-s ({v/T:5.2f} cores)  runnable-wait {wait[g]:6.2f} s ({wait[g]/T:5.2f} threads)")
