"""Per received data segment: time until the receiving socket was next read (tcp_probe -> tcp_rcv_space_adjust)."""
import sys, re, json, collections
import numpy as np
out = sys.argv[1]
cl = json.load(open(f"{out}/cluster.json"))
ports = {int(n["address"].split(":")[1]): n["name"] for n in cl["nodes"]}
t0 = json.load(open(sys.argv[2] + "/witness.json"))["t0_monotonic"] if len(sys.argv) > 2 else 0
pend = {}  # cookie -> first unread arrival time, local port, remote port
res = []  # (arrival, wait, receiver, reader thread)
pr = re.compile(r"src=\[[^\]]*\]:(\d+) dest=\[[^\]]*\]:(\d+) .*data_len=(\d+) .*sock_cookie=([0-9a-f]+)")
ra = re.compile(r"sport=(\d+) dport=(\d+) .*sock_cookie=([0-9a-f]+)")
for line in open(f"{out}/" + (sys.argv[3] if len(sys.argv) > 3 else "events.txt")):
    head, name, rest = line.split(": ", 2)
    parts = head.split(); t = float(parts[-1]); comm = " ".join(parts[:-2]); pidtid = parts[-2]
    if name.endswith("tcp_probe"):
        m = pr.search(rest)
        if not m or int(m.group(3)) == 0: continue
        ck = m.group(4)
        if ck not in pend: pend[ck] = (t, int(m.group(1)), int(m.group(2)))
    elif name.endswith("tcp_rcv_space_adjust"):
        m = ra.search(rest); ck = m.group(3)
        if ck in pend:
            ta, lp, rp = pend.pop(ck)
            recv = ports.get(lp, "client-of-" + ports.get(rp, "?"))
            res.append((ta - t0, t - ta, recv, comm, int(pidtid.split("/")[0]) if "/" in pidtid else 0, ta, t))
w = np.array([r[1] for r in res]) * 1e3
print("segments", len(w))
for q in (50, 90, 99, 99.9, 100): print(f"  unread p{q}: {np.percentile(w, q):.2f} ms")
print("  >10ms", (w > 10).sum(), ">50", (w > 50).sum(), ">100", (w > 100).sum())
by = collections.defaultdict(list)
for r in res: by[r[2]].append(r[1] * 1e3)
for k in sorted(by):
    a = np.array(by[k]); print(f"  {k:18s} n {len(a):6d} p50 {np.percentile(a,50):6.2f} p99 {np.percentile(a,99):7.2f} max {a.max():7.1f}  >50ms {(a>50).sum()}")
json.dump(res, open(f"{out}/unread.json", "w"))
