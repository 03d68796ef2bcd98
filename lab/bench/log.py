"""A benchmark's printed output: each line shown as it comes and kept for `--out`, headed by the
command that reruns it under the measurement lock, the time, the code version and the host load."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from model.results.runs import provenance


class BenchLog:
    def __init__(self, module: str, argv: Sequence[str]) -> None:
        self.lines: list[str] = []
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = " ".join(["flock /tmp/dtq-measure.lock .venv/bin/python -m", module, *argv])
        self.say(
            f"$ {command}   # {stamp}, code {provenance()['code_version']}, load average at start {load}"
        )

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)

    def write(self, out: str) -> None:
        """All lines said so far into the file `out` ('': nowhere)."""
        if out:
            Path(out).write_text("\n".join(self.lines) + "\n")
