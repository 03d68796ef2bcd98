#!/bin/bash
# one closed16-mixed run with the fixed cluster (process_group=0): design $1, tag $2
set -u
D=$1; TAG=$2
cd /work/wt/rerun58
OUT=/tmp/rerun58/out/$TAG; mkdir -p $OUT
CL=/tmp/rerun58/cl-$TAG; rm -rf $CL
.venv/bin/dtq cluster up --design $D --dir $CL --store sqlite --slots 12 -q
uptime > $OUT/uptime_start
for p in $(python3 -c "import json;print(' '.join(str(n['pid']) for n in json.load(open('$CL/cluster.json'))['nodes']))"); do cat /proc/$p/autogroup; done > $OUT/autogroups
cat /proc/self/autogroup >> $OUT/autogroups
ps -eo ni,pcpu,comm --sort=-pcpu | head -5 > $OUT/ps_start
.venv/bin/dtq load --dir $CL --workload data/workloads/tails/closed16-mixed.yaml --runs-dir /tmp/rerun58/runs --run-id $TAG --drain 3 -q
uptime > $OUT/uptime_end
.venv/bin/dtq cluster down --dir $CL -q 2>/dev/null || .venv/bin/dtq cluster down --dir $CL
cp /tmp/rerun58/runs/$TAG/config.json /tmp/rerun58/runs/$TAG/summary.json $OUT/
python3 - $TAG <<'PY'
import json,sys
t=sys.argv[1]; s=json.load(open(f"/tmp/rerun58/runs/{t}/summary.json")); a=s["latency_ms"]["all"]
print(t, "n",a["count"],"p50",a["p50"],"p99",a["p99"],"ratio",round(a["p99"]/a["p50"],2), "thr", s.get("throughput") or s.get("served_per_s"))
PY
