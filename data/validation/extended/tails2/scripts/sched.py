"""Per thread timeline from perf sched_switch/wakeup; where the reader threads were during unread gaps."""
import sys, re, json, collections
import numpy as np
out = sys.argv[1]
cl = json.load(open(f"{out}/cluster.json"))
node_pid = {n["pid"]: n["name"] for n in cl["nodes"]}
ports = {int(n["address"].split(":")[1]): n["name"] for n in cl["nodes"]}
t0 = json.load(open(sys.argv[2] + "/witness.json"))["t0_monotonic"]
hdr = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+([\w:]+):\s?(.*)$")
SKIP = ("__schedule", "schedule", "schedule_hrtimeout_range", "schedule_hrtimeout_range_clock", "schedule_timeout", "preempt_schedule", "futex_wait_queue", "__futex_wait", "futex_wait", "do_futex", "__x64_sys_futex", "do_syscall_64", "entry_SYSCALL_64_after_hwframe", "__schedule_loop", "preempt_schedule_common", "__cond_resched", "do_epoll_wait", "__x64_sys_epoll_wait", "ep_poll")
events = []  # (t, kind, tid, pid, info)
tid_pid = {}; tid_comm = {}
cur = None
def flush():
    if cur: events.append(cur)
with open(f"{out}/all.txt") as f:
    for line in f:
        m = hdr.match(line)
        if m:
            flush()
            comm, pid, tid, t, ev, rest = m.groups(); pid, tid, t = int(pid), int(tid), float(t)
            tid_pid[tid] = pid; tid_comm.setdefault(tid, comm)
            cur = [t, ev, tid, pid, rest, []]
        elif line.strip() and cur is not None and cur[1] == "sched:sched_switch":
            parts = line.split()
            if len(parts) >= 2: cur[5].append(parts[1].split("+")[0])
    flush()
print("events", len(events))
# thread states: running / runnable / sleeping(reason)
state = {}  # tid -> (since, state, reason)
intervals = collections.defaultdict(list)  # tid -> [(a,b,state,reason)]
sw = re.compile(r"prev_comm=.* prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*) next_pid=(\d+)")
wk = re.compile(r"comm=.* pid=(\d+) prio")
def setst(tid, t, st, reason=""):
    old = state.get(tid)
    if old: intervals[tid].append((old[0], t, old[1], old[2]))
    state[tid] = (t, st, reason)
for t, ev, tid, pid, rest, stack in events:
    if ev == "sched:sched_switch":
        m = sw.search(rest)
        if not m: continue
        prev, pst, _, nxt = int(m.group(1)), m.group(2), m.group(3), int(m.group(4))
        if pst.startswith("R"): setst(prev, t, "runnable", "preempted")
        else:
            reason = next((s for s in stack if s not in SKIP), "?")
            # classify
            if "futex" in " ".join(stack): reason = "futex:" + reason
            elif "ep_poll" in stack or "do_epoll_wait" in stack: reason = "epoll"
            setst(prev, t, "sleep", reason)
        setst(nxt, t, "running")
    elif ev == "sched:sched_wakeup":
        m = wk.search(rest)
        if m:
            w = int(m.group(1))
            if state.get(w, (0, ""))[1] != "running": setst(w, t, "runnable", "woken")
import pickle
json.dump({"intervals": {str(k): v for k, v in intervals.items()}, "tid_pid": tid_pid, "tid_comm": tid_comm, "t0": t0}, open(f"{out}/sched.json", "w"))
print("threads", len(intervals))
