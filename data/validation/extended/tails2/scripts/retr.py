import sys, re, json, gzip, csv, glob, collections
import numpy as np
out, run, cl = sys.argv[1], sys.argv[2], sys.argv[3]
ports = {}
for f in glob.glob(f"{cl}/*.log"):
    for line in open(f):
        if '"serving"' in line:
            d = json.loads(line); ports[int(d["address"].split(":")[1])] = d["node"]
w = json.load(open(f"{run}/witness.json")); t0 = w["t0_monotonic"]
retr = []
for line in open(f"{out}/events.txt"):
    if "retransmit" in line:
        t = float(line.split(":")[0]); sp, dp = map(int, re.search(r"sport=(\d+) dport=(\d+)", line).groups())
        if dp in ports: retr.append((t - t0, "->" + ports[dp] + " (request side)"))
        elif sp in ports: retr.append((t - t0, ports[sp] + "-> (response side)"))
        else: retr.append((t - t0, f"other {sp}->{dp}"))
print(collections.Counter(k for _, k in retr).most_common())
rows = list(csv.DictReader(gzip.open(f"{run}/requests.csv.gz", "rt")))
lat = np.array([float(r["end_time"]) - float(r["intended_time"]) for r in rows if r["status"] == "OK"])
p99 = np.percentile(lat, 99); p50 = np.percentile(lat, 50)
tail = [(float(r["start_time"]), float(r["end_time"])) for r in rows if r["status"] == "OK" and float(r["end_time"]) - float(r["intended_time"]) > p99]
print("p50 %.1f p99 %.1f tail n %d, retransmits %d" % (p50 * 1e3, p99 * 1e3, len(tail), len(retr)))
# how many tail requests have a retransmit inside their interval; and for random intervals of middle
inside = sum(any(a <= t <= b for t, _ in retr) for a, b in tail)
mid = [(float(r["start_time"]), float(r["end_time"])) for r in rows if r["status"] == "OK" and abs(float(r["end_time"]) - float(r["intended_time"]) - p50) < 0.003]
mid_in = sum(any(a <= t <= b for t, _ in retr) for a, b in mid)
print(f"tail requests with a retransmit inside: {inside}/{len(tail)}; middle: {mid_in}/{len(mid)}")
# lag from retransmit to nearest tail end
for t, k in sorted(retr)[:200]:
    ends = [b for a, b in tail if a <= t <= b]
    print(f"{t:8.3f} {k:35s} tail-inside={len(ends)}")
