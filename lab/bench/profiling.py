"""Where a server process's time goes: py-spy samples it from outside, this summarises the stacks.

py-spy (`record --format raw`) writes collapsed stacks, one line per distinct stack: frames root first,
separated by `;`, each `function (file:line)`, then the sample count. Only Python frames are seen:
time in compiled code (uvloop, gRPC's Cython layer and C core, protobuf's upb) is charged to the
Python frame that called it. A sample whose leaf is the event loop's own entry (`Runner.run`) is
therefore native work the loop does between Python callbacks, and one whose leaf is `Thread.run` is
native work in another thread (gRPC's poller); time a thread spends idle is not sampled.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# leaf frames that are native code entered from Python (function, file suffix)
LOOP_NATIVE = "native under the event loop (uvloop, gRPC Cython/C core, upb)"
NATIVE_LEAVES = {
    ("Runner.run", "asyncio/runners.py"): LOOP_NATIVE,
    ("run_forever", "asyncio/base_events.py"): LOOP_NATIVE,
    ("Thread.run", "threading.py"): "native in other threads (gRPC's poller)",
}
# leaf-frame categories, first match wins (file path fragments)
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("grpc (Cython + C core)", ("grpc/_cython", "/grpc/", "grpc_")),
    ("protobuf", ("google/protobuf",)),
    ("model/ (the core)", ("/model/",)),
    ("realsys/ (the edge)", ("/realsys/", "/dtq/v1/")),
    ("asyncio / uvloop", ("asyncio/", "uvloop")),
    ("logging, prometheus", ("logging/", "prometheus_client")),
)
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Frame:
    function: str
    file: str

    @staticmethod
    def parse(text: str) -> Frame:
        name, _, where = text.rpartition(" (")
        if not name:
            return Frame(text, "")
        return Frame(name, where.rstrip(")").rsplit(":", 1)[0])

    @property
    def category(self) -> str:
        """Where the frame's code lives (py-spy may print paths relative to the working directory)."""
        path = "/" + self.file.lstrip("/")
        for category, fragments in CATEGORIES:
            if any(f in path for f in fragments):
                return category
        return OTHER

    @property
    def leaf_category(self) -> str:
        """As `category`, but a native entry point (the loop's, a thread's) names the native work."""
        for (function, suffix), category in NATIVE_LEAVES.items():
            if self.function == function and self.file.endswith(suffix):
                return category
        return self.category

    def label(self) -> str:
        short = "/".join(Path(self.file).parts[-2:]) if self.file else "?"
        return f"{self.function} ({short})"


@dataclass(frozen=True)
class Profile:
    samples: int
    self_by_category: Counter[str]
    self_by_function: Counter[Frame]
    inclusive: Counter[Frame]  # samples with the frame anywhere on the stack (counted once per stack)

    def share(self, count: int) -> float:
        return count / self.samples if self.samples else 0.0

    def lines(self, top: int = 10, indent: str = "  ") -> list[str]:
        if not self.samples:
            return [f"{indent}no samples"]
        out = [f"{indent}{self.samples} samples; self time by where the leaf frame is:"]
        for category, count in self.self_by_category.most_common():
            out.append(f"{indent}  {self.share(count):6.1%}  {category}")
        out.append(f"{indent}top functions by self time:")
        for frame, count in self.self_by_function.most_common(top):
            out.append(f"{indent}  {self.share(count):6.1%}  {frame.label()}")
        ours = [(f, c) for f, c in self.inclusive.items() if f.category.startswith(("model", "realsys"))]
        ours.sort(key=lambda fc: (-fc[1], fc[0].function))
        out.append(f"{indent}dtq functions by inclusive time (callees included):")
        for frame, count in ours[:top]:
            out.append(f"{indent}  {self.share(count):6.1%}  {frame.label()}")
        return out


def parse_collapsed(lines: Iterable[str]) -> Profile:
    """Sums py-spy's raw (collapsed-stack) output."""
    samples = 0
    by_category: Counter[str] = Counter()
    by_function: Counter[Frame] = Counter()
    inclusive: Counter[Frame] = Counter()
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [Frame.parse(part) for part in stack.split(";") if part]
        if not frames:
            continue
        samples += count
        leaf = frames[-1]
        by_category[leaf.leaf_category] += count
        by_function[leaf] += count
        for frame in set(frames):
            inclusive[frame] += count
    return Profile(samples, by_category, by_function, inclusive)


def py_spy() -> str | None:
    """The py-spy executable: beside this interpreter (the venv) or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_sampling(pid: int, seconds: float, out: Path, rate: int = 250) -> subprocess.Popen[bytes]:
    """py-spy record on `pid` for `seconds` (non-blocking sampling: the target is not paused)."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy; it is in the lab extra)")
    command = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    command += ["--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_sampling(proc: subprocess.Popen[bytes], out: Path, timeout: float = 60.0) -> Profile:
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
    with open(out) as lines:
        return parse_collapsed(lines)
