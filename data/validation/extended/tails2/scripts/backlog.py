import sys, re, json, gzip, csv
import numpy as np
ev = open(sys.argv[1]).read().splitlines()
pending = {}; delays = []; rx_t = []; retr = []
for line in ev:
    t, name, rest = line.split(": ", 2)
    t = float(t)
    m = re.search(r"skbaddr=(0x[0-9a-f]+)", rest)
    if "netif_rx" in name: pending[m.group(1)] = t
    elif "netif_receive_skb" in name:
        t0 = pending.pop(m.group(1), None)
        if t0 is not None: delays.append(t - t0); rx_t.append(t0)
    elif "retransmit" in name:
        retr.append((t, re.search(r"sport=(\d+) dport=(\d+)", rest).groups()))
d = np.array(delays) * 1e3
print("packets", len(d), "unmatched", len(pending))
for q in (50, 90, 99, 99.9, 100): print(f"  backlog delay p{q}: {np.percentile(d, q):.3f} ms")
print("  >1ms", (d > 1).sum(), ">10ms", (d > 10).sum(), ">50ms", (d > 50).sum(), ">100ms", (d > 100).sum())
print("retransmits", len(retr))
