import sys, json, collections
import numpy as np
out = sys.argv[1]; thr = float(sys.argv[2]) if len(sys.argv) > 2 else 0.03
S = json.load(open(f"{out}/sched.json")); res = json.load(open(f"{out}/unread.json"))
cl = json.load(open(f"{out}/cluster.json")); node_pid = {n["pid"]: n["name"] for n in cl["nodes"]}
iv = {int(k): v for k, v in S["intervals"].items()}; tid_pid = {int(k): v for k, v in S["tid_pid"].items()}; comm = {int(k): v for k, v in S["tid_comm"].items()}
def kind(tid):
    pid = tid_pid.get(tid); c = comm.get(tid, "")
    if tid == pid: return "main"
    if c.startswith("event_engine"): return "event_engine"
    if c.startswith(("python", "Thread")): return "py"
    return "grpc:" + c
def overlap(tid, a, b):
    acc = collections.Counter()
    for x, y, st, why in iv.get(tid, []):
        lo, hi = max(a, x), min(b, y)
        if hi > lo: acc[st if st != "sleep" else "sleep:" + why] += hi - lo
    return acc
# gaps at node processes (reader pid is a node)
gaps = [r for r in res if r[1] > thr and r[4] in node_pid]
print("gaps >", thr * 1e3, "ms at node processes:", len(gaps), "of", sum(1 for r in res if r[4] in node_pid))
tot = collections.defaultdict(collections.Counter)
host = collections.Counter()
for r in gaps:
    a, b, pid = r[5], r[6], r[4]
    for tid in [t for t, p in tid_pid.items() if p == pid]:
        for k, v in overlap(tid, a, b).items(): tot[kind(tid)][k] += v / (b - a)
    # all threads on host: how many runnable on average
for k, c in tot.items():
    n = len(gaps); print(f"{k:24s}", {kk: round(v / n, 3) for kk, v in c.most_common(8)})
# host-wide runnable count during gaps vs overall
def runnable_count(a, b):
    s = 0.0
    for tid, L in iv.items():
        for x, y, st, why in L:
            lo, hi = max(a, x), min(b, y)
            if hi > lo and st in ("runnable", "running"): s += hi - lo
    return s / (b - a)
import random
random.seed(1)
sample = random.sample(gaps, min(15, len(gaps)))
print("threads running+runnable during gaps (mean over sample):", np.mean([runnable_count(r[5], r[6]) for r in sample]))
allts = [r for r in res if r[4] in node_pid]
lo, hi = min(r[5] for r in allts), max(r[6] for r in allts)
rs = [runnable_count(x, x + 0.05) for x in np.random.default_rng(1).uniform(lo, hi - 0.05, 15)]
print("threads running+runnable in random 50 ms windows:", np.mean(rs))
