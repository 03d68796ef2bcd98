"""A benchmark's printed output: each line shown as it comes and kept for `--out`, headed by the
command that reruns it under the measurement lock, whether this run held that lock, the time, the code
version and the host load."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from model.results.runs import provenance

LOCK = "/tmp/dtq-measure.lock"


def under_lock(pid: int | None = None, lock: str = LOCK) -> bool:
    """Whether a `flock LOCK ...` is among this process's ancestors (how the README takes the lock)."""
    pid = os.getppid() if pid is None else pid
    for _ in range(64):  # bounded: a process tree is never this deep here
        if pid <= 1:
            return False
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        if Path(args[0].decode(errors="replace")).name == "flock" and _flock_file(args[1:]) == lock.encode():
            return True
        pid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), 0)
    return False


def _flock_file(args: Sequence[bytes]) -> bytes:
    """The lock file of a `flock [options] FILE COMMAND...` command line: its first operand."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in (b"-w", b"--timeout", b"-E", b"--conflict-exit-code"):
            skip = True
        elif not arg.startswith(b"-"):
            return arg
    return b""


class BenchLog:
    def __init__(self, module: str, argv: Sequence[str]) -> None:
        self.lines: list[str] = []
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = " ".join([f"flock {LOCK} .venv/bin/python -m", module, *argv])
        held = "this run under the lock" if under_lock() else "this run NOT under the lock"
        code = provenance()["code_version"]
        self.say(f"$ {command}   # {stamp}, {held}, code {code}, load average at start {load}")

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)

    def write(self, out: str) -> None:
        """All lines said so far into the file `out` ('': nowhere)."""
        if out:
            Path(out).write_text("\n".join(self.lines) + "\n")
