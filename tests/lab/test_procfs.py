"""lab/procfs.py against this process and a child it starts: CPU grows by what was burnt, every
thread is listed, a process that is gone counts nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from lab import procfs

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux /proc")


def _burn(seconds: float) -> None:
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        pass


def test_process_cpu_counts_this_process() -> None:
    before = procfs.process_cpu(os.getpid())
    _burn(0.02)
    assert procfs.process_cpu(os.getpid()) - before >= 0.015


def test_every_thread_is_listed_and_summed() -> None:
    alone = procfs.per_thread_times(os.getpid())
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        times = procfs.per_thread_times(os.getpid())
    finally:
        stop.set()
        thread.join()
    assert str(thread.native_id) in times and str(thread.native_id) not in alone
    assert all(name for name, _, _ in times.values())
    cpu, wait = procfs.thread_times(os.getpid())
    assert cpu == pytest.approx(sum(t[1] for t in times.values()), abs=0.05) and wait >= 0


def test_a_process_that_is_gone_counts_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(OSError):
        procfs.process_cpu(child.pid)
    assert procfs.total_cpu([child.pid]) == 0.0
    assert procfs.cpu_and_wait([child.pid]) == (0.0, 0.0)
    assert procfs.rss_mib(child.pid) is None


def test_sums_over_processes() -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    child = subprocess.Popen(
        [sys.executable, "-c", burn + "print('burnt', flush=True)\ntime.sleep(30)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "burnt"
        assert procfs.process_cpu(child.pid) >= 0.25
        both = procfs.total_cpu([os.getpid(), child.pid])
        assert both >= procfs.process_cpu(child.pid) + 0.9 * procfs.process_cpu(os.getpid())
        assert procfs.cpu_and_wait([child.pid])[0] >= 0.25
    finally:
        child.kill()
        child.wait()


def test_rss_and_steal() -> None:
    rss = procfs.rss_mib(os.getpid())
    assert rss is not None and 1.0 < rss < 1e6
    steal, total = procfs.steal_ticks()
    assert 0 <= steal <= total and total > 0
