"""The `dtq` command, and the product's subcommands: run a node, manage local clusters, act on a
running cluster, replay a workload against it.

`main` is the registry: every part of dtq names its subcommands in the `dtq.commands` entry point
group of pyproject.toml (entry point name = command name, value = that part's `register(subparsers)`,
which adds its commands, each with a `handler` default). Only the part that provides the command
given is imported; `dtq --help` imports them all. A part whose optional dependencies are missing is
left out of the help, and calling one of its commands says which extra to install: the extra is named
after the part's package (`sim` -> `dtq[sim]`, `lab` -> `dtq[lab]`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from model.errors import DtqError
from model.states import JobState
from realsys import cluster
from realsys.client import DtqClient
from realsys.config import DEFAULT_NODES, MAX_NODES
from realsys.deploy import add_parser as add_deploy_parser
from realsys.server import serve_main
from realsys.trace_hooks import add_trace_parser

DESCRIPTION = "dtq: a distributed task queue in two designs, its simulator, and the lab that measures both"
COMMANDS_GROUP = "dtq.commands"
PART_ORDER = ("realsys", "sim", "lab")  # the help lists the product first
OURS = ("model", "sim", "realsys", "lab", "dtq")
USAGE_ERROR = 2


# ---------------------------------------------------------------------------- the registry
def command_entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name)


def _part(ep: importlib.metadata.EntryPoint) -> str:
    """The package that provides a command (`lab.cli:register` -> `lab`): also its extra's name."""
    return ep.value.split(":", 1)[0].split(".", 1)[0]


def build_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """The parser with the subcommands of every part that loads (of only the part providing
    `command`, when one does), and {command: why it is unavailable} for the parts that do not."""
    parser = argparse.ArgumentParser(prog="dtq", description=DESCRIPTION)
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
    return parser, unavailable


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    parser, unavailable = build_parser(command)
    if command in unavailable:
        print(f"dtq {command}: {unavailable[command]}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    args = parser.parse_args(argv)
    try:
        code = int(args.handler(args))
    except DtqError as exc:
        # the call's own status code when there is one (UNAUTHENTICATED has no core error type)
        status = getattr(getattr(exc, "grpc_code", None), "name", None) or exc.code.value
        print(f"dtq: {status}: {exc.message}", file=sys.stderr)
        code = USAGE_ERROR
    except (FileNotFoundError, FileExistsError, ValueError, TimeoutError, RuntimeError) as exc:
        print(f"dtq: {exc}", file=sys.stderr)
        code = USAGE_ERROR
    sys.exit(code)


# ---------------------------------------------------------------------------- acting on a cluster
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
    if args.payload_file:
        return Path(args.payload_file).read_bytes()
    return (args.payload or "").encode()


ClientCall = Callable[[DtqClient, argparse.Namespace], Coroutine[Any, Any, None]]


def _with_client(call: ClientCall) -> Callable[[argparse.Namespace], int]:
    """A handler that opens a client to the cluster the arguments name and runs `call` with it."""

    async def run(args: argparse.Namespace) -> int:
        async with DtqClient(_addresses(args), timeout=args.timeout, **_client_security(args)) as client:
            await call(client, args)
        return 0

    return lambda args: asyncio.run(run(args))


async def _submit(client: DtqClient, args: argparse.Namespace) -> None:
    job_id = await client.submit(
        args.job_type,
        _payload(args),
        priority=args.priority,
        max_attempts=args.max_attempts,
        execution_timeout=args.execution_timeout,
        labels=dict(kv.split("=", 1) for kv in args.label),
        request_id=args.request_id,
    )
    _print(await client.result(job_id, wait=args.wait) if args.wait else {"job_id": job_id})


async def _status(client: DtqClient, args: argparse.Namespace) -> None:
    _print(await client.status(args.job_id))


async def _result(client: DtqClient, args: argparse.Namespace) -> None:
    _print(await client.result(args.job_id, wait=args.wait))


async def _cancel(client: DtqClient, args: argparse.Namespace) -> None:
    _print(await client.cancel(args.job_id))


async def _list(client: DtqClient, args: argparse.Namespace) -> None:
    states = [JobState[s.upper()] for s in args.state]
    if args.all:
        async for job in client.list_all(states=states, job_type=args.job_type, page_size=args.page_size):
            _print(job)
        return
    jobs, token = await client.list(
        states=states, job_type=args.job_type, page_size=args.page_size, page_token=args.page_token
    )
    for job in jobs:
        _print(job)
    _print({"next_page_token": token})


# ---------------------------------------------------------------------------- local clusters
def _cluster_up(args: argparse.Namespace) -> int:
    overrides = {}
    if args.lease:
        overrides["DTQ_LEASE_DURATION"] = str(args.lease)
    if args.heartbeat:
        overrides["DTQ_HEARTBEAT_INTERVAL"] = str(args.heartbeat)
    if args.job_modules:
        overrides["DTQ_JOB_MODULES"] = args.job_modules
    if args.trace_dir:
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
    return 0


def _cluster_down(args: argparse.Namespace) -> int:
    cluster.down(Path(args.dir))
    _print({"down": str(Path(args.dir))})
    return 0


def _cluster_status(args: argparse.Namespace) -> int:
    for row in cluster.status(Path(args.dir)):
        _print(row)
    return 0


def _cluster_kill(args: argparse.Namespace) -> int:
    cluster.kill(Path(args.dir), args.name, getattr(signal, args.signal))
    return 0


def _cluster_start(args: argparse.Namespace) -> int:
    node = cluster.start(Path(args.dir), args.name)
    _print({"name": node.name, "address": node.address, "pid": node.pid})
    return 0


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
    return 0


def _load(args: argparse.Namespace) -> int:
    from realsys.loadgen import load_command  # numpy and the load generator: off a node's start-up path

    return load_command(args)


def _serve(args: argparse.Namespace) -> int:
    serve_main()
    return 0


# ---------------------------------------------------------------------------- the parsers
def _target(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--dir", help="a cluster directory (reads cluster.json)")
    group.add_argument("--addr", action="append", help="a client-facing address; repeatable")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call deadline in seconds")


def _credentials(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default="", help="client token (default: $DTQ_TOKEN, or --dir's cluster)")
    p.add_argument("--ca", default="", help="CA certificate, PEM (default: $DTQ_TLS_CA, or --dir's)")


def _client_parser(sub: Any, name: str, call: ClientCall, **kwargs: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
    _target(p)
    _credentials(p)
    p.set_defaults(handler=_with_client(call))
    return p


def _add_cluster(sub: Any) -> None:
    p_cluster = sub.add_parser("cluster", help="local process clusters (six roles, or N Design B nodes)")
    csub = p_cluster.add_subparsers(dest="cluster_command", required=True)
    p_up = csub.add_parser("up", help="start the processes and wait until all are healthy")
    p_up.add_argument("--design", choices=["micro", "mono"], required=True)
    p_up.add_argument("--dir", required=True)
    p_up.add_argument(
        "--slots",
        type=int,
        default=12,
        help="total worker slots (same for both designs; Design B splits them evenly over its nodes)",
    )
    p_up.add_argument(
        "--nodes",
        type=int,
        help=f"Design B: nodes n1..nN (1 to {MAX_NODES}; default {DEFAULT_NODES})",
    )
    p_up.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    p_up.add_argument("--lease", type=float, default=0.0, help="lease duration in seconds")
    p_up.add_argument("--heartbeat", type=float, default=0.0, help="heartbeat interval in seconds")
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
        help="trace every job's hops into DIR (DTQ_TRACE_DIR; read with `dtq trace JOB_ID --dir DIR`)",
    )
    p_up.set_defaults(handler=_cluster_up)
    for name, handler in (("down", _cluster_down), ("status", _cluster_status)):
        p = csub.add_parser(name)
        p.add_argument("--dir", required=True)
        p.set_defaults(handler=handler)
    p_kill = csub.add_parser("kill", help="signal one node (fault injection)")
    p_kill.add_argument("--dir", required=True)
    p_kill.add_argument("name")
    p_kill.add_argument("--signal", default="SIGKILL", choices=["SIGKILL", "SIGTERM", "SIGSTOP", "SIGCONT"])
    p_kill.set_defaults(handler=_cluster_kill)
    p_start = csub.add_parser("start", help="(re)start one node on its port and data")
    p_start.add_argument("--dir", required=True)
    p_start.add_argument("name")
    p_start.set_defaults(handler=_cluster_start)


def _add_client_commands(sub: Any) -> None:
    p_submit = _client_parser(sub, "submit", _submit, help="submit a job")
    p_submit.add_argument("job_type")
    p_submit.add_argument("--payload", help="payload text, e.g. JSON for built-in types")
    p_submit.add_argument("--payload-file")
    p_submit.add_argument("--priority", type=int, default=0)
    p_submit.add_argument("--max-attempts", type=int, default=0)
    p_submit.add_argument("--execution-timeout", type=float, default=0.0)
    p_submit.add_argument("--label", action="append", default=[], help="KEY=VALUE; repeatable")
    p_submit.add_argument("--request-id", default="")
    p_submit.add_argument("--wait", type=float, default=0.0, help="wait up to this long for the result")
    for name, call, what in (("status", _status, "a job's status"), ("cancel", _cancel, "cancel a job")):
        _client_parser(sub, name, call, help=what).add_argument("job_id")
    p_result = _client_parser(sub, "result", _result, help="a job's result (long-polls with --wait)")
    p_result.add_argument("job_id")
    p_result.add_argument("--wait", type=float, default=0.0)
    p_list = _client_parser(sub, "list", _list, help="list jobs, filtered, a page at a time")
    p_list.add_argument(
        "--state", action="append", default=[], choices=[s.name.lower() for s in JobState][1:]
    )
    p_list.add_argument("--job-type", default="")
    p_list.add_argument("--page-size", type=int, default=0)
    p_list.add_argument("--page-token", default="")
    p_list.add_argument("--all", action="store_true", help="follow next_page_token to the end")


def _add_load(sub: Any) -> None:
    p_load = sub.add_parser("load", help="replay a workload file against a cluster; write a run directory")
    _target(p_load)
    p_load.add_argument("--workload", required=True, help="a .yaml/.toml workload (data/workloads/)")
    p_load.add_argument("--design", choices=["micro", "mono"], help="with --addr: the design behind it")
    p_load.add_argument("--out", default="data/runs", help="runs root directory")
    p_load.add_argument("--run-id", default="", help="default: real-<design>-<workload>-<seed>-<UTC time>")
    p_load.add_argument("--processes", type=int, default=1, help="load generator processes")
    p_load.add_argument("--drain", type=float, default=10.0, help="seconds to let jobs finish after the run")
    p_load.add_argument("--replication", type=int, default=0)
    p_load.add_argument("--no-records", action="store_true", help="write only config.json and summary.json")
    p_load.add_argument(
        "--submit-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="synchronous-invocation client: each SubmitJob waits up to S s for its job's end (1 RPC/job)",
    )
    p_load.set_defaults(handler=_load)


def register(sub: Any) -> None:
    """The product's commands: serve, cluster, submit, status, result, cancel, list, load, trace, demo."""
    sub.add_parser("serve", help="run one node; configured by DTQ_* environment variables").set_defaults(
        handler=_serve
    )
    _add_cluster(sub)
    _add_client_commands(sub)
    _add_load(sub)
    add_trace_parser(sub)
    add_deploy_parser(sub)
    p_demo = sub.add_parser("demo", help="start each design, run jobs end to end, stop it")
    p_demo.add_argument("--design", action="append", choices=["micro", "mono"])
    p_demo.add_argument("--jobs", type=int, default=200)
    p_demo.set_defaults(handler=_demo)
