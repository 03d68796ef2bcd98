"""The `dtq` command: run a node, manage local clusters, and act on a running cluster."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from model.errors import DtqError
from model.states import JobState


def _print(message: Any) -> None:
    if hasattr(message, "DESCRIPTOR"):
        message = MessageToDict(message, preserving_proto_field_name=True)
    print(json.dumps(message, sort_keys=False))


def _addresses(args: argparse.Namespace) -> list[str]:
    from realsys import cluster

    if args.addr:
        return list(args.addr)
    return cluster.load_client(Path(args.dir)).clients


def _client_security(args: argparse.Namespace) -> dict[str, Any]:
    """Token and CA: flags, else DTQ_TOKEN / DTQ_TLS_CA, else (with --dir) the cluster's client.json."""
    from realsys import cluster

    token = args.token or os.environ.get("DTQ_TOKEN", "")
    ca = args.ca or os.environ.get("DTQ_TLS_CA", "")
    if args.dir and not token and not ca:
        return cluster.load_client(Path(args.dir)).security()
    return {"token": token, "root_certificates": Path(ca).read_bytes() if ca else None}


def _payload(args: argparse.Namespace) -> bytes:
    if args.payload_file:
        return Path(args.payload_file).read_bytes()
    return (args.payload or "").encode()


async def _client_call(args: argparse.Namespace) -> int:
    from realsys.client import DtqClient

    async with DtqClient(_addresses(args), timeout=args.timeout, **_client_security(args)) as client:
        if args.command == "submit":
            job_id = await client.submit(
                args.job_type,
                _payload(args),
                priority=args.priority,
                max_attempts=args.max_attempts,
                execution_timeout=args.execution_timeout,
                labels=dict(kv.split("=", 1) for kv in args.label),
                request_id=args.request_id,
            )
            if args.wait:
                _print(await client.result(job_id, wait=args.wait))
            else:
                _print({"job_id": job_id})
        elif args.command == "status":
            _print(await client.status(args.job_id))
        elif args.command == "result":
            _print(await client.result(args.job_id, wait=args.wait))
        elif args.command == "cancel":
            _print(await client.cancel(args.job_id))
        elif args.command == "list":
            states = [JobState[s.upper()] for s in args.state]
            if args.all:
                async for job in client.list_all(
                    states=states, job_type=args.job_type, page_size=args.page_size
                ):
                    _print(job)
            else:
                jobs, token = await client.list(
                    states=states,
                    job_type=args.job_type,
                    page_size=args.page_size,
                    page_token=args.page_token,
                )
                for job in jobs:
                    _print(job)
                _print({"next_page_token": token})
    return 0


def _cmd_cluster(args: argparse.Namespace) -> int:
    from realsys import cluster

    directory = Path(args.dir)
    if args.cluster_command == "up":
        overrides = {}
        if args.lease:
            overrides["DTQ_LEASE_DURATION"] = str(args.lease)
        if args.heartbeat:
            overrides["DTQ_HEARTBEAT_INTERVAL"] = str(args.heartbeat)
        info = cluster.up(args.design, directory, args.slots, args.store, overrides, secure=args.secure)
        _print(
            {
                "design": info.design,
                "clients": info.clients,
                "nodes": [{"name": n.name, "role": n.role, "address": n.address} for n in info.nodes],
                # tokens are not printed: they are in client.json (mode 0600), read by `--dir`
                **({"tls_ca": info.tls_ca} if info.tls_ca else {}),
            }
        )
    elif args.cluster_command == "down":
        cluster.down(directory)
        _print({"down": str(directory)})
    elif args.cluster_command == "status":
        for row in cluster.status(directory):
            _print(row)
    elif args.cluster_command == "kill":
        cluster.kill(directory, args.name, getattr(signal, args.signal))
    elif args.cluster_command == "start":
        node = cluster.start(directory, args.name)
        _print({"name": node.name, "address": node.address, "pid": node.pid})
    return 0


async def _demo_design(design: str, directory: Path, jobs: int) -> None:
    from realsys import cluster
    from realsys.client import DtqClient

    started = time.monotonic()
    info = cluster.up(design, directory)
    print(
        f"[{design}] six processes healthy in {time.monotonic() - started:.1f}s: "
        + ", ".join(f"{n.name}@{n.address}" for n in info.nodes)
    )
    try:
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
    finally:
        cluster.down(directory)
        print(f"[{design}] cluster down")


def _cmd_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="dtq-demo-") as tmp:
        for design in args.design:
            asyncio.run(_demo_design(design, Path(tmp) / design, args.jobs))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run one node; configured by DTQ_* environment variables")

    p_cluster = sub.add_parser("cluster", help="local six-process clusters")
    csub = p_cluster.add_subparsers(dest="cluster_command", required=True)
    p_up = csub.add_parser("up", help="start six nodes and wait until all are healthy")
    p_up.add_argument("--design", choices=["micro", "mono"], required=True)
    p_up.add_argument("--dir", required=True)
    p_up.add_argument("--slots", type=int, default=12, help="total worker slots (same for both designs)")
    p_up.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    p_up.add_argument("--lease", type=float, default=0.0, help="lease duration in seconds")
    p_up.add_argument("--heartbeat", type=float, default=0.0, help="heartbeat interval in seconds")
    p_up.add_argument(
        "--secure", action="store_true", help="TLS with a throwaway CA, and tokens (kept in DIR/cluster.json)"
    )
    for name in ("down", "status"):
        csub.add_parser(name).add_argument("--dir", required=True)
    p_kill = csub.add_parser("kill", help="signal one node (fault injection)")
    p_kill.add_argument("--dir", required=True)
    p_kill.add_argument("name")
    p_kill.add_argument("--signal", default="SIGKILL", choices=["SIGKILL", "SIGTERM", "SIGSTOP", "SIGCONT"])
    p_start = csub.add_parser("start", help="(re)start one node on its port and data")
    p_start.add_argument("--dir", required=True)
    p_start.add_argument("name")

    def target(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("--dir", help="a cluster directory (reads cluster.json)")
        group.add_argument("--addr", action="append", help="a client-facing address; repeatable")
        p.add_argument("--timeout", type=float, default=10.0, help="per-call deadline in seconds")

    def credentials(p: argparse.ArgumentParser) -> None:
        p.add_argument("--token", default="", help="client token (default: $DTQ_TOKEN, or --dir's cluster)")
        p.add_argument("--ca", default="", help="CA certificate, PEM (default: $DTQ_TLS_CA, or --dir's)")

    p_submit = sub.add_parser("submit", help="submit a job")
    target(p_submit)
    credentials(p_submit)
    p_submit.add_argument("job_type")
    p_submit.add_argument("--payload", help="payload text, e.g. JSON for built-in types")
    p_submit.add_argument("--payload-file")
    p_submit.add_argument("--priority", type=int, default=0)
    p_submit.add_argument("--max-attempts", type=int, default=0)
    p_submit.add_argument("--execution-timeout", type=float, default=0.0)
    p_submit.add_argument("--label", action="append", default=[], help="KEY=VALUE; repeatable")
    p_submit.add_argument("--request-id", default="")
    p_submit.add_argument("--wait", type=float, default=0.0, help="wait up to this long for the result")
    for name in ("status", "cancel"):
        p = sub.add_parser(name)
        target(p)
        credentials(p)
        p.add_argument("job_id")
    p_result = sub.add_parser("result")
    target(p_result)
    credentials(p_result)
    p_result.add_argument("job_id")
    p_result.add_argument("--wait", type=float, default=0.0)
    p_list = sub.add_parser("list")
    target(p_list)
    credentials(p_list)
    p_list.add_argument(
        "--state", action="append", default=[], choices=[s.name.lower() for s in JobState][1:]
    )
    p_list.add_argument("--job-type", default="")
    p_list.add_argument("--page-size", type=int, default=0)
    p_list.add_argument("--page-token", default="")
    p_list.add_argument("--all", action="store_true", help="follow next_page_token to the end")

    p_demo = sub.add_parser("demo", help="start each design, run jobs end to end, stop it")
    p_demo.add_argument("--design", action="append", choices=["micro", "mono"])
    p_demo.add_argument("--jobs", type=int, default=200)

    from sim.api import add_arguments as add_sim_arguments

    add_sim_arguments(sub.add_parser("sim", help="simulate a workload on a design; write a run directory"))

    p_load = sub.add_parser("load", help="replay a workload file against a cluster; write a run directory")
    target(p_load)
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

    from realsys.experiment import add_parser as add_experiment_parser

    add_experiment_parser(sub)  # `dtq experiment run|summarize`

    from realsys.experiment import add_validate_parser

    add_validate_parser(sub)  # `dtq validate` (sim/validation.py)

    from realsys.bench import add_parser as add_bench_parser

    add_bench_parser(sub)  # `dtq bench`

    from realsys.soak import add_parser as add_soak_parser

    add_soak_parser(sub)  # `dtq soak`

    from realsys.faults import add_parser as add_faults_parser

    add_faults_parser(sub)  # `dtq faults run`

    from realsys.calibrate import add_arguments as add_calibrate_arguments

    add_calibrate_arguments(
        sub.add_parser("calibrate", help="measure single operations; write data/calibration/<name>.json")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from realsys.server import serve_main

            serve_main()
            code = 0
        elif args.command == "cluster":
            code = _cmd_cluster(args)
        elif args.command == "experiment":
            from realsys.experiment import command as experiment_command

            code = experiment_command(args)
        elif args.command == "validate":
            from realsys.experiment import validate_command

            code = validate_command(args)
        elif args.command == "bench":
            from realsys.bench import bench_command

            code = bench_command(args)
        elif args.command == "faults":
            from realsys.faults import faults_command as real_faults_command

            code = real_faults_command(args)
        elif args.command == "soak":
            from realsys.soak import soak_command

            code = soak_command(args)
        elif args.command == "calibrate":
            from realsys.calibrate import calibrate_command

            code = calibrate_command(args)
        elif args.command == "load":
            from realsys.loadgen import load_command

            code = load_command(args)
        elif args.command == "sim" and args.sim_action == "faults":
            from sim.faults import faults_command, format_rows

            rows, audits, written = faults_command(args)
            print(format_rows(rows, audits))
            if written is not None:
                print(f"rows written to {written}")
            code = 0
        elif args.command == "sim":
            from realsys.loadgen import format_summary
            from sim.api import sim_command

            summary, path = sim_command(args)
            print(format_summary(summary))
            if args.mva:
                from sim.api import mva_text

                print(mva_text(args, summary))
            if path is not None:
                print(f"run written to {path}")
            code = 0
        elif args.command == "demo":
            args.design = args.design or ["micro", "mono"]
            code = _cmd_demo(args)
        else:
            code = asyncio.run(_client_call(args))
    except DtqError as exc:
        # the call's own status code when there is one (UNAUTHENTICATED has no core error type)
        status = getattr(getattr(exc, "grpc_code", None), "name", None) or exc.code.value
        print(f"dtq: {status}: {exc.message}", file=sys.stderr)
        code = 2
    except (FileNotFoundError, FileExistsError, ValueError, TimeoutError, RuntimeError) as exc:
        print(f"dtq: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
