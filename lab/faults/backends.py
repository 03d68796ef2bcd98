"""Where a fault run's cluster runs: the protocol every backend follows, and the local backend (six
processes of realsys.cluster in a temporary folder; a partition puts the target in its own network
namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lab.faults.inject import Injection, Namespace, RealFault, inject_local, namespace_down, namespace_up
from realsys import cluster


class FaultCluster(Protocol):
    """A running cluster of one fault run: where clients connect, and how a fault is applied to it."""

    @property
    def design(self) -> str: ...

    @property
    def clients(self) -> list[str]: ...  # client-facing addresses

    def client_security(self) -> dict[str, Any]: ...

    async def inject(self, fault: RealFault, now: Callable[[], float]) -> Injection: ...

    def describe(self) -> dict[str, Any]: ...  # for the run's config.json


class Backend(Protocol):
    """Starts a fresh cluster for one fault run and tears it down afterwards."""

    @property
    def name(self) -> str: ...

    @property
    def run_prefix(self) -> str: ...  # of run ids: `<run_prefix>-<design>-<fault>-<target>-...`

    def open(
        self, design: str, fault: RealFault, store: str, slots: int, settings: Mapping[str, str]
    ) -> AbstractAsyncContextManager[FaultCluster]: ...


@dataclass(frozen=True, slots=True)
class LocalCluster:
    info: cluster.ClusterInfo
    space: Namespace | None

    @property
    def design(self) -> str:
        return self.info.design

    @property
    def clients(self) -> list[str]:
        return self.info.clients

    def client_security(self) -> dict[str, Any]:
        return self.info.client_security()

    async def inject(self, fault: RealFault, now: Callable[[], float]) -> Injection:
        return await inject_local(self.info.directory, fault, now, self.space)

    def describe(self) -> dict[str, Any]:
        return {"backend": "local"}


@dataclass(frozen=True, slots=True)
class LocalBackend:
    """Six local processes (realsys.cluster) in a temporary folder under `workdir`."""

    workdir: Path | None = None
    name: str = "local"
    run_prefix: str = "real-faults"

    @contextlib.asynccontextmanager
    async def open(
        self, design: str, fault: RealFault, store: str, slots: int, settings: Mapping[str, str]
    ) -> AsyncIterator[FaultCluster]:
        space = namespace_up() if fault.action == "partition" else None
        try:
            hosts: dict[str, str] = {}
            netns: dict[str, str] = {}
            if space is not None:  # everyone on the veth's host end, the target behind it
                names = cluster.MICRO_ROLES if design == "micro" else cluster.MONO_NODES
                hosts = {name: space.host_ip for name in names} | {fault.target: space.ns_ip}
                netns = {fault.target: space.name}
            local = cluster.running(
                design,
                total_slots=slots,
                store=store,
                overrides=dict(settings),
                timeout=60.0,
                hosts=hosts,
                netns=netns,
                grace=10.0,
                prefix="dtq-faults-",
                under=self.workdir,
            )
            # up and down block (health polls, a node's drain): off the event loop
            info = await asyncio.to_thread(local.__enter__)
            try:
                yield LocalCluster(info, space)
            finally:
                with contextlib.suppress(ProcessLookupError, KeyError, FileNotFoundError):
                    cluster.kill(info.directory, fault.target, signal.SIGCONT)  # a stop interrupted
                await asyncio.to_thread(local.__exit__, None, None, None)
        finally:
            if space is not None:
                namespace_down(space)
