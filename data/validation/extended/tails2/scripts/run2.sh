#!/bin/bash
# stalls.py run with perf net tracepoints: design $1 tag $2 workload $3
set -u
D=$1; TAG=$2; W=$3
cd /work/wt/tails2
OUT=/tmp/tails2/out/$TAG; mkdir -p $OUT
CL=/tmp/tails2/cl-$TAG; rm -rf $CL
.venv/bin/dtq cluster up --design $D --dir $CL --store sqlite --slots 12 -q
cp $CL/cluster.json $OUT/; for p in $(python3 -c "import json;print(' '.join(str(n['pid']) for n in json.load(open('$CL/cluster.json'))['nodes']))"); do cat /proc/$p/autogroup; done > $OUT/autogroups; uptime > $OUT/uptime_start; cat /proc/net/softnet_stat > $OUT/softnet_before
nstat -az > $OUT/nstat_before
perf record -q -k CLOCK_MONOTONIC -a -e tcp:tcp_probe -e tcp:tcp_rcv_space_adjust -e tcp:tcp_retransmit_skb -e 'sched:sched_switch/call-graph=fp,max-stack=10/' -e sched:sched_wakeup -o $OUT/perf.data &
PP=$!
sleep 1
.venv/bin/python -m lab.validation.stalls --dir $CL --workload $W --runs-dir /tmp/tails2/runs --run-id $TAG --drain 3
kill -INT $PP; wait $PP
nstat -az > $OUT/nstat_after; cat /proc/net/softnet_stat > $OUT/softnet_after
uptime > $OUT/uptime_end
cp $CL/cluster.json $OUT/ 2>/dev/null; .venv/bin/dtq cluster down --dir $CL -q
