"""Run directories on disk (data/README.md, schema 1): write, read and stamp them.

Shared by the real load generator, the Celery baseline and the simulator, so it imports no gRPC or
protobuf. Everything written is byte-identical for identical input: JSON with sorted keys, CSV with
fixed float formatting (model/results/schema.py), gzip with mtime 0 and no file name. A run directory appears
atomically: it is written as `<run_id>.tmp` and renamed.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import hashlib
import importlib.metadata
import io
import json
import math
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model.errors import InvalidArgument
from model.results.documents import read_document
from model.results.schema import (
    JOB_FIELDS,
    LEGACY_JOB_FIELDS,
    REQUEST_FIELDS,
    SCHEMA,
    JobRecord,
    RequestRecord,
    job_from_row,
    job_rows,
    request_from_row,
    request_rows,
)
from model.workload import Op, Recording, WorkloadSpec, workload_from_mapping, workload_to_mapping

CONFIG_FILE = "config.json"
REQUESTS_FILE = "requests.csv.gz"
JOBS_FILE = "jobs.csv.gz"
SUMMARY_FILE = "summary.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("grpcio", "protobuf", "simpy", "numpy", "scipy", "hdrhistogram", "dtq")


# ---------------------------------------------------------------------------- workload files
class WorkloadFiles:
    """The files a workload names (model.workload.WorkloadFiles), relative to `base` (the workload
    file's directory; absolute paths, as config.json records them, are taken as they are)."""

    def __init__(self, base: Path | str | None = None) -> None:
        self.base = Path(base) if base is not None else Path.cwd()

    def _path(self, name: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_absolute() else (self.base / path).resolve()

    def samples(self, path: str) -> tuple[str, tuple[float, ...]]:
        """Numbers from a text file: separated by spaces, commas or new lines; `#` starts a comment."""
        file = self._path(path)
        try:
            text = file.read_text()
        except OSError as exc:
            raise InvalidArgument(f"cannot read {file}: {exc.strerror or exc}") from None
        numbers = []
        for n, line in enumerate(text.splitlines(), 1):
            for word in line.split("#", 1)[0].replace(",", " ").split():
                try:
                    numbers.append(float(word))
                except ValueError:
                    raise InvalidArgument(f"{file}:{n}: {word!r} is not a number") from None
        return str(file), tuple(numbers)

    def recording(self, path: str) -> Recording:
        run_dir = self._path(path)
        if not (run_dir / REQUESTS_FILE).is_file() or not (run_dir / CONFIG_FILE).is_file():
            raise InvalidArgument(f"{run_dir} is not a run directory with records ({REQUESTS_FILE})")
        return recording_of(run_dir)


def recording_of(run_dir: Path | str) -> Recording:
    """A run directory's requests as a replay replays them (model.workload.Recording): intended times,
    ops, each submit's recorded job duration, and each status/result/cancel's target: the fraction
    (k + 0.5) / n for the k-th of the n jobs accepted (in answer order) before it was sent."""
    run_dir = Path(run_dir)
    requests = sorted(
        read_request_records(run_dir / REQUESTS_FILE), key=lambda r: (r.intended_time, r.client)
    )
    durations: dict[str, float] = {}
    if (run_dir / JOBS_FILE).is_file():
        durations = {j.job_id: j.duration for j in read_job_records(run_dir / JOBS_FILE)}
    accepted = sorted(
        (r.end_time, r.job_id) for r in requests if r.op is Op.SUBMIT and r.status == "OK" and r.job_id
    )
    accept_times = [t for t, _ in accepted]
    order = {job_id: k for k, (_, job_id) in enumerate(accepted)}
    ops, durs, targets = [], [], []
    for r in requests:
        ops.append(int(r.op))
        durs.append(durations.get(r.job_id, math.nan) if r.op is Op.SUBMIT else 0.0)
        k = order.get(r.job_id) if r.op in (Op.STATUS, Op.RESULT, Op.CANCEL) else None
        n = bisect.bisect_left(accept_times, r.start_time)
        targets.append(min(0.999999, (k + 0.5) / n) if k is not None and k < n else 0.0)
    config = load_config(run_dir)
    workload = config.get("workload", {})
    return Recording(
        path=str(run_dir.resolve()),
        times=tuple(r.intended_time for r in requests),
        ops=tuple(ops),
        durations=tuple(durs),
        targets=tuple(targets),
        run_time=float(workload.get("run_time", 10.0)),
        warmup=float(workload.get("warmup", 1.0)),
    )


def workload_of(mapping: Mapping[str, Any], base: Path | str | None = None) -> WorkloadSpec:
    """model.workload.workload_from_mapping, with the files it names read relative to `base` (default:
    the current directory; config.json's paths are absolute)."""
    return workload_from_mapping(mapping, WorkloadFiles(base))


def load_workload(path: Path | str) -> WorkloadSpec:
    """A WorkloadSpec from a .yaml/.yml or .toml file (validated by model.workload_from_mapping); the
    files it names are relative to the workload file."""
    path = Path(path)
    data = read_document(path, (".yaml", ".yml", ".toml"))
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{path}: a workload file holds one mapping")
    try:
        return workload_of(data, path.parent)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc.message}") from None


# ---------------------------------------------------------------------------- provenance
def _git_version(repo: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """Code version, Python, library versions and a hardware fingerprint (the host name only hashed)."""
    return {
        "code_version": _git_version(repo),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "kernel": platform.release(),
            "hostname_sha256": hashlib.sha256(platform.node().encode()).hexdigest()[:12],
        },
    }


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fresh_path(default: Path | str, force: bool = False) -> Path:
    """Where a command writes an output it names by default: `default` when it does not exist yet or
    with `force`, else a new file beside it stamped with the UTC time (`real-mono-20261207-141502.json`),
    so nothing committed is overwritten unless asked. A name the user gave is used as given."""
    default = Path(default)
    if force or not default.exists():
        return default
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    candidate = default.with_name(f"{default.stem}-{stamp}{default.suffix}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = default.with_name(f"{default.stem}-{stamp}-{n}{default.suffix}")
    return candidate


def output_file(path: Path | str, flag: str = "--out", beside: str = "") -> Path:
    """`path` checked before a long command runs, not when it writes at the end: not a directory,
    its folder made, and (with `beside`, the suffix of a second file written next to it) not that
    second file's own name, which would replace it."""
    path = Path(path)
    if path.is_dir():
        raise InvalidArgument(f"{flag} {path}: is a directory; name a file")
    if beside and path.suffix == beside:
        raise InvalidArgument(
            f"{flag} {path}: the {beside} table goes beside it under that name; name a .json file"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(
            f"{flag} {path}: cannot make its folder {path.parent} ({exc.strerror})"
        ) from None
    return path


def new_run_id(kind: str, design: str, name: str, seed: int) -> str:
    """A timestamped id for runs not made by the experiment runner."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{kind}-{design}-{name}-{seed}-{stamp}"


def run_config(
    *,
    run_id: str,
    kind: str,
    design: str,
    workload: WorkloadSpec,
    parameters: Mapping[str, Any],
    replication: int = 0,
    started_at: str | None = None,
    provenance_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config.json dict. The simulator passes fixed `started_at`/`provenance_info` when it wants
    byte-identical run directories across invocations."""
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "kind": kind,
        "design": design,
        "workload": workload_to_mapping(workload),
        "parameters": dict(parameters),
        "seed": workload.seed,
        "replication": replication,
        "provenance": dict(provenance_info) if provenance_info is not None else provenance(),
        "started_at": started_at or utc_now(),
    }


# ---------------------------------------------------------------------------- writing
def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def write_csv_gz(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Gzip-compressed CSV, byte-identical for identical rows (mtime 0, no embedded file name)."""
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="") as text,
    ):
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_request_records(path: Path, requests: Iterable[RequestRecord]) -> None:
    write_csv_gz(path, REQUEST_FIELDS, request_rows(requests))


def write_job_records(path: Path, jobs: Iterable[JobRecord]) -> None:
    write_csv_gz(path, JOB_FIELDS, job_rows(jobs))


def run_exists(root: Path | str, run_id: str) -> bool:
    """True when the run was completely written (its directory exists with a summary)."""
    return (Path(root) / run_id / SUMMARY_FILE).is_file()


def _check_run_id(run_id: str) -> None:
    if not run_id or run_id in (".", "..") or "/" in run_id or os.sep in run_id or run_id.endswith(".tmp"):
        raise InvalidArgument(f"bad run id {run_id!r}: one path component, not ending in .tmp")


def check_new_run(root: Path | str, run_id: str, overwrite: bool = False) -> None:
    """What write_run would refuse, checked before a run is made (a real load cannot be redone):
    a bad run id, a root that is a file, an existing run unless `overwrite`."""
    _check_run_id(run_id)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InvalidArgument(f"runs directory {root}: is a file")
    if (root / run_id).exists() and not overwrite:
        raise FileExistsError(f"run {root / run_id} exists")


def write_run(
    root: Path | str,
    run_id: str,
    config: Mapping[str, Any],
    requests: Iterable[RequestRecord],
    jobs: Iterable[JobRecord],
    summary: Mapping[str, Any],
    *,
    records: bool = True,
    overwrite: bool = False,
) -> Path:
    """Writes root/run_id/{config.json, requests.csv.gz, jobs.csv.gz, summary.json} and returns the
    directory. `records=False` skips the two per-record files (large sweeps). An existing run is an
    error unless `overwrite`."""
    check_new_run(root, run_id, overwrite)
    for name, value in (("config", config), ("summary", summary)):
        if value.get("run_id") != run_id:
            raise InvalidArgument(f"{name} run_id {value.get('run_id')!r} is not {run_id!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / run_id
    tmp = root / f"{run_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # left over from an interrupted write
    tmp.mkdir()
    try:
        (tmp / CONFIG_FILE).write_bytes(json_bytes(config))
        if records:
            write_request_records(tmp / REQUESTS_FILE, requests)
            write_job_records(tmp / JOBS_FILE, jobs)
        # the summary last: run_exists() looks for it
        (tmp / SUMMARY_FILE).write_bytes(json_bytes(summary))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# ---------------------------------------------------------------------------- reading
def _read_csv_gz(path: Path, header: Sequence[str], legacy: Sequence[str] = ()) -> Iterable[list[str]]:
    """The rows after the header; rows of a `legacy` header (a prefix of `header`) are padded with
    empty cells."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        first = next(reader, None)
        if first == list(header):
            yield from reader
        elif legacy and first == list(legacy):
            pad = [""] * (len(header) - len(legacy))
            for row in reader:
                yield row + pad
        else:
            raise InvalidArgument(f"{path}: header {first} is not {list(header)}")


def read_request_records(path: Path) -> list[RequestRecord]:
    return [request_from_row(row) for row in _read_csv_gz(path, REQUEST_FIELDS)]


def read_job_records(path: Path) -> list[JobRecord]:
    return [job_from_row(row) for row in _read_csv_gz(path, JOB_FIELDS, LEGACY_JOB_FIELDS)]


def load_config(run_dir: Path | str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    return data


def load_summary(run_dir: Path | str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(run_dir) / SUMMARY_FILE).read_text())
    return data


def load_run_workload(run_dir: Path | str) -> WorkloadSpec:
    """The WorkloadSpec a run was made with (from config.json), e.g. to replay it in the simulator."""
    return workload_of(load_config(run_dir)["workload"], run_dir)


def load_requests(run_dir: Path | str) -> dict[str, npt.NDArray[Any]]:
    """requests.csv.gz as columns: times float64 (seconds), client int64, op/status/job_id str arrays.
    Latency = end_time - intended_time."""
    rows = list(_read_csv_gz(Path(run_dir) / REQUESTS_FILE, REQUEST_FIELDS))
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in REQUEST_FIELDS]
    by_name = dict(zip(REQUEST_FIELDS, cols, strict=True))
    out: dict[str, npt.NDArray[Any]] = {
        "client": np.asarray(by_name["client"], dtype=np.int64),
        "op": np.asarray(by_name["op"], dtype=str),
        "status": np.asarray(by_name["status"], dtype=str),
        "job_id": np.asarray(by_name["job_id"], dtype=str),
    }
    for name in ("intended_time", "start_time", "end_time"):
        out[name] = _float_column(by_name[name])
    return out


def load_jobs(run_dir: Path | str) -> dict[str, npt.NDArray[Any]]:
    """jobs.csv.gz as columns; end_time is NaN for jobs that did not finish."""
    rows = list(_read_csv_gz(Path(run_dir) / JOBS_FILE, JOB_FIELDS, LEGACY_JOB_FIELDS))
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in JOB_FIELDS]
    by_name = dict(zip(JOB_FIELDS, cols, strict=True))
    out: dict[str, npt.NDArray[Any]] = {
        "job_id": np.asarray(by_name["job_id"], dtype=str),
        "final_state": np.asarray(by_name["final_state"], dtype=str),
        "attempts": np.asarray(by_name["attempts"], dtype=np.int64),
        "priority": np.asarray([int(p or 0) for p in by_name["priority"]], dtype=np.int64),
        "reason": np.asarray(by_name["reason"], dtype=str),
    }
    for name in ("submit_time", "accept_time", "end_time", "duration"):
        out[name] = _float_column(by_name[name])
    return out


def _float_column(values: Sequence[str]) -> npt.NDArray[np.float64]:
    return np.array([float(v) if v else np.nan for v in values], dtype=np.float64)


def load_records(run_dir: Path | str) -> tuple[list[RequestRecord], list[JobRecord]]:
    """The per-request and per-job records as model.results.schema objects (e.g. to summarise again)."""
    run_dir = Path(run_dir)
    return read_request_records(run_dir / REQUESTS_FILE), read_job_records(run_dir / JOBS_FILE)
