"""The `dtq` command, and the product's subcommands: run a node, manage local clusters, act on a
running cluster, replay a workload against it.

`main` is the registry: every part of dtq names its subcommands in the `dtq.commands` entry point
group of pyproject.toml (entry point name = command name, value = that part's `register(subparsers)`,
which adds its commands, each with a `handler` default). Only the part that provides the command
given is imported; `dtq --help` imports them all. A part whose optional dependencies are missing is
left out of the help, and calling one of its commands says which extra to install: the extra is named
after the part's package (`sim` -> `dtq[sim]`, `lab` -> `dtq[lab]`). `main` also turns every error into
one line on stderr and an exit code (realsys/cli_common.py `Exit`, README "Exit codes").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.json_format import MessageToDict

from model.config import CoreConfig
from model.errors import DtqError, FailedPrecondition, InvalidArgument
from model.states import JobState
from realsys import cluster
from realsys.cli_common import (
    DtqParser,
    Exit,
    address,
    configure_progress,
    deprecated_alias,
    int32,
    key_value,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    timestamp,
)
from realsys.client import DtqClient, grpc_code
from realsys.config import DEFAULT_NODES, MAX_NODES, settings_help
from realsys.deploy import add_parser as add_deploy_parser
from realsys.server import serve_main
from realsys.trace_hooks import add_trace_parser

DESCRIPTION = "dtq: a distributed task queue in two designs, its simulator, and the lab that measures both"
EPILOG = """exit codes:
  0  done
  1  the command could not do its work (a cluster that would not start, a run that broke)
  2  bad arguments or input (flags, files, settings, or INVALID_ARGUMENT from the cluster)
  3  a call to the cluster failed (the message starts with its gRPC status code)
  4  the job ended FAILED or CANCELLED (submit --wait, result), or runs of a sweep failed
  5  --wait ran out before the job ended
  130, 143  interrupted by Ctrl-C or SIGTERM (what the command started is stopped first)
"""
COMMANDS_GROUP = "dtq.commands"
PART_ORDER = ("realsys", "sim", "lab")  # the help lists the product first
OURS = ("model", "sim", "realsys", "lab", "dtq")


# ---------------------------------------------------------------------------- the registry
def command_entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name)


def _part(ep: importlib.metadata.EntryPoint) -> str:
    """The package that provides a command (`lab.cli:register` -> `lab`): also its extra's name."""
    return ep.value.split(":", 1)[0].split(".", 1)[0]


def build_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """The parser with the subcommands of every part that loads (of only the part providing
    `command`, when one does), and {command: why it is unavailable} for the parts that do not."""
    parser = DtqParser(prog="dtq", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"dtq {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    by_value: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for ep in command_entry_points():
        by_value.setdefault(ep.value, []).append(ep)
    if command is not None and any(ep.name == command for eps in by_value.values() for ep in eps):
        by_value = {v: eps for v, eps in by_value.items() if any(ep.name == command for ep in eps)}
    unavailable: dict[str, str] = {}
    order = {part: i for i, part in enumerate(PART_ORDER)}
    for eps in sorted(by_value.values(), key=lambda eps: order.get(_part(eps[0]), len(order))):
        part = _part(eps[0])
        try:
            register = eps[0].load()
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".", 1)[0]
            if missing in OURS and missing != part:
                raise  # a module of ours that should be there: a bug, not a missing extra
            why = f"needs the {part!r} extra: pip install 'dtq[{part}]' (no module named {exc.name!r})"
            unavailable.update(dict.fromkeys((ep.name for ep in eps), why))
            continue
        register(sub)
    for leaf in _leaves(parser):
        if "quiet" not in {a.dest for a in leaf._actions}:
            leaf.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
        leaf.set_defaults(dtq_prog=leaf.prog)  # "dtq cluster up": what error and progress lines start with
    return parser, unavailable


def _version() -> str:
    try:
        return importlib.metadata.version("dtq")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of the commands that run (those without subcommands of their own), once each."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    seen: dict[int, argparse.ArgumentParser] = {}
    for action in subs:
        for child in action.choices.values():
            for leaf in _leaves(child):
                seen.setdefault(id(leaf), leaf)
    return list(seen.values())


def main(argv: Sequence[str] | None = None) -> None:
    """`dtq ARGS`: runs the command and exits with its code (cli_common.Exit). Every error is one
    line on stderr, never a traceback (DTQ_TRACEBACK=1 adds it, for a bug report)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    parser, unavailable = build_parser(command)
    if command in unavailable:
        print(f"dtq {command}: {unavailable[command]}", file=sys.stderr)
        sys.exit(Exit.USAGE)
    args, extra = parser.parse_known_args(argv)
    prog = getattr(args, "dtq_prog", "dtq")
    if extra:  # as parse_args would, but naming the command they were given to, not `dtq`
        print(
            f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see `{prog} --help`)", file=sys.stderr
        )
        sys.exit(Exit.USAGE)
    configure_progress(prog, bool(getattr(args, "quiet", False)))
    main_thread = threading.current_thread() is threading.main_thread()  # signal.signal's rule
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None  # serve: its own drain
    try:
        code = int(args.handler(args))
    except Terminated:
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        code = 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # stdout's reader left (`dtq list ... | head`): stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        code = 128 + signal.SIGPIPE
    except Exception as exc:  # every error ends as one line and an exit code (error_exit)
        code, message = error_exit(exc)
        print(f"{prog}: {message}", file=sys.stderr)
        if os.environ.get("DTQ_TRACEBACK"):
            traceback.print_exc()
    finally:
        if main_thread:  # main() called in-process (tests) leaves the caller's handler as it was
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    sys.exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, as Ctrl-C is: the clusters and child processes it
    started are stopped by the same `finally`s (Python's default SIGTERM ends at once and left a
    killed `dtq calibrate`'s probe cluster running)."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def error_exit(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for an error that ended a command."""
    if isinstance(exc, DtqError):
        code = getattr(exc, "grpc_code", None)
        if code is not None:  # raised by a call to the cluster: its status code names the failure
            kind = Exit.USAGE if code.name == "INVALID_ARGUMENT" else Exit.RPC  # refused input, as ours
            return kind, f"{code.name}: {_one_line(exc.message)}"
        return Exit.USAGE, _one_line(exc.message)
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError):
        if exc.filename is not None:
            return Exit.USAGE, f"{exc.filename}: {exc.strerror}"
        return Exit.USAGE, _one_line(str(exc))
    if isinstance(exc, FileExistsError | ValueError | UnicodeDecodeError | yaml.YAMLError):
        return Exit.USAGE, _one_line(str(exc))
    if isinstance(exc, subprocess.CalledProcessError):
        cmd = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd))
        return Exit.FAILED, f"{cmd!r} exited with {exc.returncode}"
    if isinstance(exc, TimeoutError | RuntimeError | OSError):
        return Exit.FAILED, _one_line(str(exc) or type(exc).__name__)
    return Exit.FAILED, (
        f"internal error: {type(exc).__name__}: {_one_line(str(exc))} "
        "(a bug: DTQ_TRACEBACK=1 prints the traceback for a report)"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------- acting on a cluster
def _labels(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """--label KEY=VALUE flags as a mapping; one key with two values is an error (not the last one)."""
    labels: dict[str, str] = {}
    for key, value in pairs:
        if labels.setdefault(key, value) != value:
            raise InvalidArgument(f"--label {key}: given twice ({labels[key]!r} and {value!r})")
    return labels


def _print(message: Any) -> None:
    if hasattr(message, "DESCRIPTOR"):
        message = MessageToDict(message, preserving_proto_field_name=True)
    print(json.dumps(message, sort_keys=False))


def _addresses(args: argparse.Namespace) -> list[str]:
    if args.addr:
        return list(args.addr)
    return cluster.load_client(Path(args.dir)).clients


def _client_security(args: argparse.Namespace) -> dict[str, Any]:
    """Token and CA: flags, else DTQ_TOKEN / DTQ_TLS_CA, else (with --dir) the cluster's client.json."""
    token = args.token or os.environ.get("DTQ_TOKEN", "")
    ca = args.ca or os.environ.get("DTQ_TLS_CA", "")
    if args.dir and not token and not ca:
        return cluster.load_client(Path(args.dir)).security()
    return {"token": token, "root_certificates": Path(ca).read_bytes() if ca else None}


def _payload(args: argparse.Namespace) -> bytes:
    if args.payload_file == "-":
        return sys.stdin.buffer.read()
    if args.payload_file:
        return Path(args.payload_file).read_bytes()
    return (args.payload or "").encode()


ClientCall = Callable[[DtqClient, argparse.Namespace], Coroutine[Any, Any, int]]


def _with_client(call: ClientCall) -> Callable[[argparse.Namespace], int]:
    """A handler that opens a client to the cluster the arguments name and runs `call` with it."""

    async def run(args: argparse.Namespace) -> int:
        async with DtqClient(_addresses(args), timeout=args.timeout, **_client_security(args)) as client:
            return await call(client, args)

    return lambda args: asyncio.run(run(args))


async def _submit(client: DtqClient, args: argparse.Namespace) -> int:
    job_id = await client.submit(
        args.job_type,
        _payload(args),
        priority=args.priority,
        max_attempts=args.max_attempts,
        execution_timeout=args.execution_timeout,
        labels=_labels(args.label),
        request_id=args.request_id,
    )
    if not args.wait:
        _print({"job_id": job_id})
        return Exit.OK
    return await _outcome(client, job_id, args)


async def _status(client: DtqClient, args: argparse.Namespace) -> int:
    _print(await client.status(args.job_id))
    return Exit.OK


async def _result(client: DtqClient, args: argparse.Namespace) -> int:
    return await _outcome(client, args.job_id, args)


async def _outcome(client: DtqClient, job_id: str, args: argparse.Namespace) -> int:
    """Waits up to --wait for the job's end and prints its output: exit 0 when it SUCCEEDED, 4 when it
    ended FAILED or CANCELLED (the error on stderr), 5 when it had not ended."""
    if args.wait > 0:
        job = await client.wait(job_id, args.wait)  # re-polls past any one long-poll's cap
        if not job.done:
            if args.format == "json":
                _print({"job": job})
            print(
                f"{args.dtq_prog}: job {job_id} is still {JobState(job.state).name} after --wait "
                f"{args.wait:g} s",
                file=sys.stderr,
            )
            return Exit.NOT_DONE
    try:
        reply = await client.result(job_id)
    except FailedPrecondition as exc:
        if grpc_code(exc) is None:
            raise
        print(f"{args.dtq_prog}: {exc.message} (wait for it with --wait SECONDS)", file=sys.stderr)
        return Exit.NOT_DONE
    if args.format == "json":
        _print(reply)
    ended = JobState(reply.job.state)
    if ended is JobState.SUCCEEDED:
        if args.format != "json":
            _write_output(reply.response.output, args.format, args.dtq_prog)
        return Exit.OK
    error = reply.error if reply.HasField("error") else reply.job.error
    why = ": ".join(filter(None, (error.reason, error.message))) or "no reason given"
    print(f"{args.dtq_prog}: job {job_id} ended {ended.name}: {why}", file=sys.stderr)
    return Exit.JOB_FAILED


def _write_output(output: bytes, how: str, prog: str = "dtq") -> None:
    """A job's output on stdout: as it is (`raw`), as base64, or (`auto`) as text when it is text
    (UTF-8 without control characters but tabs and line ends: JSON is text), else as base64."""
    if not output and how != "raw":
        return  # nothing to print (e.g. a sleep job's output): no empty line
    if how == "raw":
        sys.stdout.flush()
        sys.stdout.buffer.write(output)
        sys.stdout.buffer.flush()
        return
    text = _as_text(output) if how == "auto" else None
    if text is None:
        if how == "auto":
            print(f"{prog}: the output ({len(output)} bytes) is not text: base64 follows", file=sys.stderr)
        print(base64.b64encode(output).decode())
    else:
        print(text, end="" if text.endswith("\n") else "\n")


def _as_text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in text):
        return None
    return text


async def _cancel(client: DtqClient, args: argparse.Namespace) -> int:
    _print(await client.cancel(args.job_id))
    return Exit.OK


async def _list(client: DtqClient, args: argparse.Namespace) -> int:
    states = [JobState[s.upper()] for s in args.state]
    filters: dict[str, Any] = {
        "states": states,
        "job_type": args.job_type,
        "labels": _labels(args.label),
        "created_after": args.created_after,
        "created_before": args.created_before,
        "page_size": args.page_size,
    }
    if args.all:
        async for job in client.list_all(**filters):
            _print(job)
        return Exit.OK
    jobs, token = await client.list(**filters, page_token=args.page_token)
    for job in jobs:
        _print(job)
    _print({"next_page_token": token})
    return Exit.OK


# ---------------------------------------------------------------------------- local clusters
def _cluster_up(args: argparse.Namespace) -> int:
    core = {"lease_duration": args.lease, "heartbeat_interval": args.heartbeat}
    core = {k: v for k, v in core.items() if v is not None}
    CoreConfig(**core)  # InvalidArgument (exit 2) before anything starts: e.g. a heartbeat >= the lease
    overrides = {f"DTQ_{k.upper()}": repr(v) for k, v in core.items()}
    if args.job_modules:
        overrides["DTQ_JOB_MODULES"] = args.job_modules
    if args.trace_dir:
        if Path(args.trace_dir).exists() and not Path(args.trace_dir).is_dir():  # else every node fails
            raise ValueError(f"--trace-dir {args.trace_dir}: is a file, not a directory")
        overrides["DTQ_TRACE_DIR"] = str(Path(args.trace_dir).resolve())
    if args.nodes is not None and args.design != "mono":
        raise ValueError("--nodes is for Design B (--design mono); Design A runs its six roles")
    nodes = DEFAULT_NODES if args.nodes is None else args.nodes
    info = cluster.up(
        args.design, Path(args.dir), args.slots, args.store, overrides, secure=args.secure, nodes=nodes
    )
    _print(
        {
            "design": info.design,
            "clients": info.clients,
            "nodes": [
                {"name": n.name, "role": n.role, "address": n.address, "metrics": n.metrics}
                for n in info.nodes
            ],
            # tokens are not printed: they are in client.json (mode 0600), read by `--dir`
            **({"tls_ca": info.tls_ca} if info.tls_ca else {}),
        }
    )
    return Exit.OK


def _cluster_down(args: argparse.Namespace) -> int:
    cluster.down(Path(args.dir))
    _print({"down": str(Path(args.dir))})
    return Exit.OK


def _cluster_status(args: argparse.Namespace) -> int:
    for row in cluster.status(Path(args.dir)):
        _print(row)
    return Exit.OK


def _cluster_kill(args: argparse.Namespace) -> int:
    cluster.kill(Path(args.dir), args.name, getattr(signal, args.signal))
    return Exit.OK


def _cluster_start(args: argparse.Namespace) -> int:
    node = cluster.start(Path(args.dir), args.name)
    _print({"name": node.name, "address": node.address, "pid": node.pid})
    return Exit.OK


async def _demo_design(design: str, info: cluster.ClusterInfo, started: float, jobs: int) -> None:
    print(
        f"[{design}] six processes healthy in {time.monotonic() - started:.1f}s: "
        + ", ".join(f"{n.name}@{n.address}" for n in info.nodes)
    )
    async with DtqClient(info.clients, timeout=10.0) as client:
        t0 = time.monotonic()
        ids = await asyncio.gather(
            *(
                client.submit("sleep", json.dumps({"seconds": 0.05}).encode(), labels={"demo": design})
                for _ in range(jobs)
            )
        )
        echo_id = await client.submit("echo", b"hello from " + design.encode())
        fail_id = await client.submit("fail", json.dumps({"probability": 1.0}).encode(), max_attempts=2)
        # high priority, so it is running (not pending) when the cancel arrives
        long_id = await client.submit("sleep", json.dumps({"seconds": 30}).encode(), priority=10)
        await asyncio.sleep(0.3)
        cancelled = await client.cancel(long_id)
        done = await asyncio.gather(
            *(client.wait(j, timeout=30.0) for j in [*ids, echo_id, fail_id, long_id])
        )
        states: dict[str, int] = {}
        for job in done:
            states[JobState(job.state).name] = states.get(JobState(job.state).name, 0) + 1
        echo = await client.result(echo_id)
        listed = [j async for j in client.list_all(labels={"demo": design}, page_size=7)]
        print(
            f"[{design}] {jobs} sleep jobs + echo + fail + cancel finished in "
            f"{time.monotonic() - t0:.2f}s; final states {states}"
        )
        print(
            f"[{design}] echo result: {echo.response.output!r}; cancel of a running job went "
            f"{JobState(cancelled.state).name} -> {JobState(done[-1].state).name}; "
            f"ListJobs paged {len(listed)} labelled jobs (page size 7)"
        )


def _demo(args: argparse.Namespace) -> int:
    for design in args.design or ["micro", "mono"]:
        started = time.monotonic()
        with cluster.running(design, prefix="dtq-demo-") as info:
            asyncio.run(_demo_design(design, info, started, args.jobs))
        print(f"[{design}] cluster down")
    return Exit.OK


def _load(args: argparse.Namespace) -> int:
    from realsys.loadgen import load_command  # numpy and the load generator: off a node's start-up path

    return load_command(args)


def _serve(args: argparse.Namespace) -> int:
    serve_main()
    return Exit.OK


# ---------------------------------------------------------------------------- the parsers
def _target(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--dir", help="a cluster directory (reads its client.json)")
    group.add_argument(
        "--addr", type=address, action="append", help="a client-facing address host:port; repeatable"
    )
    p.add_argument("--timeout", type=positive_float, default=10.0, help="per-call deadline in seconds")


def _credentials(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default="", help="client token (default: $DTQ_TOKEN, or --dir's cluster)")
    p.add_argument("--ca", default="", help="CA certificate, PEM (default: $DTQ_TLS_CA, or --dir's)")


def _client_parser(sub: Any, name: str, call: ClientCall, **kwargs: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
    _target(p)
    _credentials(p)
    p.set_defaults(handler=_with_client(call))
    return p


def _cluster_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", required=True, help="the cluster's directory (cluster.json, logs, data)")


def _add_cluster(sub: Any) -> None:
    p_cluster = sub.add_parser("cluster", help="local process clusters (six roles, or N Design B nodes)")
    csub = p_cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    p_up = csub.add_parser("up", help="start the processes and wait until all are healthy")
    p_up.add_argument("--design", choices=["micro", "mono"], required=True, help="A (micro) or B (mono)")
    _cluster_dir(p_up)
    p_up.add_argument(
        "--slots",
        type=positive_int,
        default=cluster.DEFAULT_TOTAL_SLOTS,
        help="total worker slots (same for both designs; Design B splits them evenly over its nodes)",
    )
    p_up.add_argument(
        "--nodes",
        type=positive_int,
        help=f"Design B: nodes n1..nN (1 to {MAX_NODES}; default {DEFAULT_NODES})",
    )
    p_up.add_argument("--store", choices=["sqlite", "memory"], default="sqlite", help="where jobs are kept")
    defaults = CoreConfig()
    p_up.add_argument(
        "--lease",
        type=positive_float,
        metavar="S",
        help=f"lease duration, s (DTQ_LEASE_DURATION; default {defaults.lease_duration:g})",
    )
    p_up.add_argument(
        "--heartbeat",
        type=positive_float,
        metavar="S",
        help=f"heartbeat interval, s (DTQ_HEARTBEAT_INTERVAL; default {defaults.heartbeat_interval:g})",
    )
    p_up.add_argument(
        "--secure", action="store_true", help="TLS with a throwaway CA, and tokens (kept in DIR/cluster.json)"
    )
    p_up.add_argument(
        "--job-modules",
        default="",
        metavar="MODULES",
        help="comma-separated modules whose @job_type handlers the workers load (DTQ_JOB_MODULES)",
    )
    p_up.add_argument(
        "--trace-dir",
        default="",
        metavar="DIR",
        help="trace every job's hops into DIR (DTQ_TRACE_DIR; read with `dtq trace JOB_ID --dir CLUSTER`)",
    )
    p_up.set_defaults(handler=_cluster_up)
    for name, handler, what in (
        ("down", _cluster_down, "stop every process (SIGTERM: they drain), then forget the cluster"),
        ("status", _cluster_status, "each process's role, addresses, pid and whether it is alive"),
    ):
        p = csub.add_parser(name, help=what)
        _cluster_dir(p)
        p.set_defaults(handler=handler)
    p_kill = csub.add_parser("kill", help="signal one node (fault injection)")
    _cluster_dir(p_kill)
    p_kill.add_argument("name", help="the node: n1..nN (Design B) or a role (Design A)")
    p_kill.add_argument(
        "--signal", default="SIGKILL", choices=["SIGKILL", "SIGTERM", "SIGSTOP", "SIGCONT"], help="which"
    )
    p_kill.set_defaults(handler=_cluster_kill)
    p_start = csub.add_parser("start", help="(re)start one node on its port and data")
    _cluster_dir(p_start)
    p_start.add_argument("name", help="the node: n1..nN (Design B) or a role (Design A)")
    p_start.set_defaults(handler=_cluster_start)


def _outcome_flags(p: argparse.ArgumentParser, wait_help: str) -> None:
    p.add_argument("--wait", type=non_negative_float, default=0.0, metavar="S", help=wait_help)
    p.add_argument(
        "--format",
        choices=["auto", "raw", "base64", "json"],
        default="auto",
        help="the output: auto = as text when it is UTF-8 text (JSON is), else base64; raw = the bytes; "
        "json = the whole GetJobResult reply",
    )


def _add_client_commands(sub: Any) -> None:
    p_submit = _client_parser(sub, "submit", _submit, help="submit a job (with --wait: and print its output)")
    p_submit.add_argument("job_type", help="sleep, cpu, echo, fail, or one of DTQ_JOB_MODULES")
    payload = p_submit.add_mutually_exclusive_group()
    payload.add_argument("--payload", help="payload text, e.g. JSON for built-in types")
    payload.add_argument("--payload-file", metavar="FILE", help="payload bytes from FILE ('-': stdin)")
    p_submit.add_argument("--priority", type=int32, default=0, help="higher runs first")
    p_submit.add_argument(
        "--max-attempts", type=non_negative_int, default=0, help="attempts before FAILED (0: the server's)"
    )
    p_submit.add_argument(
        "--execution-timeout", type=non_negative_float, default=0.0, metavar="S", help="0: the server's"
    )
    p_submit.add_argument(
        "--label", type=key_value, action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    p_submit.add_argument("--request-id", default="", help="makes retries of this submit idempotent")
    _outcome_flags(p_submit, "wait up to S seconds for the job to end, then print its output (0: do not)")
    for name, call, what in (("status", _status, "a job's status"), ("cancel", _cancel, "cancel a job")):
        _client_parser(sub, name, call, help=what).add_argument("job_id", help="e.g. n1-1-0000000001")
    p_result = _client_parser(sub, "result", _result, help="a finished job's output (long-polls with --wait)")
    p_result.add_argument("job_id", help="e.g. n1-1-0000000001")
    _outcome_flags(p_result, "wait up to S seconds for the job to end")
    p_list = _client_parser(sub, "list", _list, help="list jobs, filtered, a page at a time")
    p_list.add_argument(
        "--state",
        action="append",
        default=[],
        choices=[s.name.lower() for s in JobState][1:],
        help="repeatable: any of them",
    )
    p_list.add_argument("--job-type", default="", help="only this job type")
    p_list.add_argument(
        "--label",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="repeatable: all of them",
    )
    p_list.add_argument(
        "--created-after",
        type=timestamp,
        metavar="TIME",
        help="ISO 8601 (UTC unless a zone) or epoch s; inclusive",
    )
    p_list.add_argument(
        "--created-before", type=timestamp, metavar="TIME", help="as --created-after; exclusive"
    )
    p_list.add_argument("--page-size", type=non_negative_int, default=0, help="0: the server's default (50)")
    p_list.add_argument("--page-token", default="", help="the next_page_token of the page before")
    p_list.add_argument("--all", action="store_true", help="follow next_page_token to the end")


def _add_load(sub: Any) -> None:
    p_load = sub.add_parser("load", help="replay a workload file against a cluster; write a run directory")
    _target(p_load)
    p_load.add_argument("--workload", required=True, help="a .yaml/.toml workload (data/workloads/)")
    p_load.add_argument("--design", choices=["micro", "mono"], help="with --addr: the design behind it")
    p_load.add_argument("--runs-dir", default="data/runs", metavar="DIR", help="root of the run directories")
    deprecated_alias(p_load, "--out", "--runs-dir", "runs_dir")
    p_load.add_argument("--run-id", default="", help="default: real-<design>-<workload>-<seed>-<UTC time>")
    p_load.add_argument("--processes", type=positive_int, default=1, help="load generator processes")
    p_load.add_argument(
        "--drain", type=non_negative_float, default=10.0, help="seconds to let jobs finish after the run"
    )
    p_load.add_argument("--replication", type=non_negative_int, default=0, help="replication index")
    p_load.add_argument("--no-records", action="store_true", help="write only config.json and summary.json")
    p_load.add_argument(
        "--host-probe",
        action="store_true",
        help="probe the host's speed before the load (the lab's probe, ~1.5 s) into config.json, as "
        "experiments do: `dtq sim --host-scale RUN_DIR` moves the run's twin to it",
    )
    p_load.add_argument(
        "--submit-wait",
        type=non_negative_float,
        default=0.0,
        metavar="S",
        help="synchronous-invocation client: each SubmitJob waits up to S s for its job's end (1 RPC/job)",
    )
    p_load.set_defaults(handler=_load)


def register(sub: Any) -> None:
    """The product's commands: serve, cluster, submit, status, result, cancel, list, load, trace, demo."""
    sub.add_parser(
        "serve",
        help="run one node; configured by DTQ_* environment variables",
        epilog=settings_help(),
    ).set_defaults(handler=_serve)
    _add_cluster(sub)
    _add_client_commands(sub)
    _add_load(sub)
    add_trace_parser(sub)
    add_deploy_parser(sub)
    p_demo = sub.add_parser("demo", help="start each design, run jobs end to end, stop it")
    p_demo.add_argument(
        "--design", action="append", choices=["micro", "mono"], help="repeatable (default: both)"
    )
    p_demo.add_argument("--jobs", type=positive_int, default=200, help="sleep jobs per design")
    p_demo.set_defaults(handler=_demo)
