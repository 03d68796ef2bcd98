#!/bin/bash
# one run: design $1, tag $2, workload $3, extra cluster args $4
set -u
D=$1; TAG=$2; W=$3; EXTRA=${4:-}
cd /work/wt/tails2
OUT=/tmp/tails2/out/$TAG; mkdir -p $OUT
CL=/tmp/tails2/cl-$TAG; rm -rf $CL
.venv/bin/dtq cluster up --design $D --dir $CL --store sqlite --slots 12 -q $EXTRA
uptime > $OUT/uptime_start; for p in $(python3 -c "import json;print(' '.join(str(n['pid']) for n in json.load(open('$CL/cluster.json'))['nodes']))"); do cat /proc/$p/autogroup; done > $OUT/autogroups; cat /proc/self/autogroup >> $OUT/autogroups; ps -eo ni,pcpu,comm --sort=-pcpu | head -4 > $OUT/ps_start
nstat -az > /dev/null   # reset nstat history
nstat -az > $OUT/nstat_before
( for i in $(seq 1 60); do echo "=== $(date +%s.%N)"; ss -tinoe state all '( sport >= 1024 and dport >= 1024 )' src 127.0.0.1 2>/dev/null; sleep 0.5; done ) > $OUT/ss.txt &
SSP=$!
.venv/bin/dtq load --dir $CL --workload $W --runs-dir /tmp/tails2/runs --run-id $TAG --drain 3 -q
nstat -az > $OUT/nstat_after
kill $SSP 2>/dev/null
uptime > $OUT/uptime_end
.venv/bin/dtq cluster down --dir $CL -q 2>/dev/null || .venv/bin/dtq cluster down --dir $CL
python3 - $TAG <<'PY'
import json,sys
t=sys.argv[1]; s=json.load(open(f"/tmp/tails2/runs/{t}/summary.json")); a=s["latency_ms"]["all"]
print(t, "n",a["count"],"p50",a["p50"],"p99",a["p99"],"ratio",round(a["p99"]/a["p50"],2), "thr", s.get("throughput") or s.get("served_per_s"))
PY
