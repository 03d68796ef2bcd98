from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.config import CoreConfig
from model.errors import InvalidArgument
from realsys.config import (
    CALLS,
    CORE_MEANINGS,
    MAX_MESSAGE_BYTES,
    MICRO_ROLES,
    SETTINGS,
    NodeConfig,
    config_to_env,
    core_settings,
    grpc_options,
    load_config,
    misspelt_settings,
    settings_help,
)

SERVICES = "gateway=127.0.0.1:5000,job=127.0.0.1:5001,queue=127.0.0.1:5002,coordinator=h:5003,result=h:5004"


def mono_env(**extra: str) -> dict[str, str]:
    env = {"DTQ_ROLE": "node", "DTQ_NAME": "n1", "DTQ_PEERS": "n1=127.0.0.1:5001,n2=127.0.0.1:5002"}
    env.update(extra)
    return env


def micro_env(role: str = "coordinator", **extra: str) -> dict[str, str]:
    env = {"DTQ_DESIGN": "micro", "DTQ_ROLE": role, "DTQ_SERVICES": SERVICES}
    env.update(extra)
    return env


# ---------------------------------------------------------------------------- defaults and round trips
def test_mono_defaults() -> None:
    config = load_config(mono_env())
    assert config.design == "mono"  # inferred from the role
    assert config.role == "node" and config.name == "n1"
    assert config.listen == "127.0.0.1:0"
    assert config.store == "sqlite"
    assert config.slots == 2
    assert config.core == CoreConfig()
    assert dict(config.peers) == {"n1": "127.0.0.1:5001", "n2": "127.0.0.1:5002"}
    assert dict(config.services) == {}
    assert (config.metrics_port, config.rpc_timeout, config.fetch_wait) == (0, 5.0, 5.0)
    assert (config.steal_interval, config.drain_timeout, config.log_level) == (0.05, 10.0, "INFO")


@pytest.mark.parametrize("role", MICRO_ROLES)
def test_micro_name_defaults_to_role_and_slots_only_for_workers(role: str) -> None:
    config = load_config(micro_env(role))
    assert config.design == "micro"
    assert config.name == role
    assert config.slots == (12 if role == "worker" else 0)


def test_every_variable_is_read() -> None:
    env = micro_env(
        "worker",
        DTQ_NAME="w7",
        DTQ_LISTEN="[::1]:6000",
        DTQ_DATA_DIR="/tmp/somewhere",
        DTQ_STORE="memory",
        DTQ_SLOTS="3",
        DTQ_METRICS_PORT="-1",
        DTQ_RPC_TIMEOUT="1.5",
        DTQ_FETCH_WAIT="0",
        DTQ_STEAL_INTERVAL="0.2",
        DTQ_STEAL_FANOUT="3",
        DTQ_DRAIN_TIMEOUT="0.5",
        DTQ_LOG_LEVEL="debug",
        DTQ_GC="freeze",
        DTQ_LEASE_DURATION="4",
        DTQ_HEARTBEAT_INTERVAL="0.5",
        DTQ_WORKER_TTL="3",
        DTQ_MAX_PENDING="100",
        DTQ_MAX_PAYLOAD_BYTES="2048",
        DTQ_DEFAULT_MAX_ATTEMPTS="5",
        DTQ_DEFAULT_EXECUTION_TIMEOUT="60",
    )
    config = load_config(env)
    assert config == NodeConfig(
        design="micro",
        role="worker",
        name="w7",
        listen="[::1]:6000",
        data_dir=Path("/tmp/somewhere"),
        store="memory",
        slots=3,
        core=CoreConfig(
            lease_duration=4.0,
            heartbeat_interval=0.5,
            worker_ttl=3.0,
            max_pending=100,
            max_payload_bytes=2048,
            default_max_attempts=5,
            default_execution_timeout=60.0,
        ),
        peers={},
        services=dict(item.split("=") for item in SERVICES.split(",")),
        metrics_port=-1,
        rpc_timeout=1.5,
        fetch_wait=0.0,
        steal_interval=0.2,
        steal_fanout=3,
        drain_timeout=0.5,
        log_level="DEBUG",
        gc_mode="freeze",
    )
    assert isinstance(config.core.max_pending, int)
    assert load_config(config_to_env(config)) == config


def test_round_trip_of_constructed_config() -> None:
    config = NodeConfig(
        design="mono",
        role="node",
        name="n3",
        listen="0.0.0.0:5003",
        data_dir=Path("rel/dir"),
        store="sqlite",
        slots=0,
        core=CoreConfig(reservation_hold=1.25, backoff_jitter=0.1, max_page_size=10, default_page_size=7),
        peers={"n3": "node3:5003", "n1": "node1:5001"},
        services={},
        steal_interval=1e-3,
    )
    env = config_to_env(config)
    assert all(isinstance(v, str) for v in env.values())
    assert load_config(env) == config


finite = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(
    slots=st.integers(0, 1000),
    metrics_port=st.integers(-1, 65535),
    rpc_timeout=finite,
    fetch_wait=finite,
    drain_timeout=finite,
    lease=st.floats(2.0, 1e5),
    heartbeat=st.floats(0.01, 1.99),
    peers=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True), st.integers(0, 65535), max_size=4
    ),
)
def test_round_trip_property(
    slots: int,
    metrics_port: int,
    rpc_timeout: float,
    fetch_wait: float,
    drain_timeout: float,
    lease: float,
    heartbeat: float,
    peers: dict[str, int],
) -> None:
    env = mono_env(
        DTQ_SLOTS=str(slots),
        DTQ_METRICS_PORT=str(metrics_port),
        DTQ_RPC_TIMEOUT=repr(rpc_timeout),
        DTQ_FETCH_WAIT=repr(fetch_wait),
        DTQ_DRAIN_TIMEOUT=repr(drain_timeout),
        DTQ_LEASE_DURATION=repr(lease),
        DTQ_HEARTBEAT_INTERVAL=repr(heartbeat),
        DTQ_PEERS=",".join(["n1=localhost:1", *(f"{k}=h{k}:{v}" for k, v in peers.items() if k != "n1")]),
    )
    config = load_config(env)
    assert config.core.lease_duration == lease
    assert config.rpc_timeout == rpc_timeout
    assert load_config(config_to_env(config)) == config


def test_grpc_options_set_message_limits() -> None:
    options = dict(grpc_options())
    assert options["grpc.max_send_message_length"] == MAX_MESSAGE_BYTES
    assert options["grpc.max_receive_message_length"] == MAX_MESSAGE_BYTES
    # we accept pings at least as often as we send them, or peers get GOAWAY too_many_pings
    assert options["grpc.http2.min_ping_interval_without_data_ms"] <= options["grpc.keepalive_time_ms"]


# ---------------------------------------------------------------------------- validation
def without(env: dict[str, str], var: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != var}


BAD = [
    ("missing role", without(mono_env(), "DTQ_ROLE"), "DTQ_ROLE is required"),
    ("unknown role", mono_env(DTQ_ROLE="boss"), "DTQ_ROLE must be one of"),
    ("unknown design", mono_env(DTQ_DESIGN="macro"), "DTQ_DESIGN must be one of"),
    ("mono with a micro role", micro_env("gateway", DTQ_DESIGN="mono"), "DTQ_DESIGN=mono runs role 'node'"),
    ("micro with role node", mono_env(DTQ_DESIGN="micro"), "DTQ_DESIGN=micro needs DTQ_ROLE"),
    ("mono without a name", without(mono_env(), "DTQ_NAME"), "DTQ_NAME is required"),
    ("bad name", mono_env(DTQ_NAME="Node-1"), "DTQ_NAME"),
    ("listen without port", mono_env(DTQ_LISTEN="localhost"), "DTQ_LISTEN: address 'localhost'"),
    ("listen port too big", mono_env(DTQ_LISTEN="localhost:70000"), "DTQ_LISTEN"),
    ("listen without host", mono_env(DTQ_LISTEN=":5000"), "DTQ_LISTEN"),
    ("empty data dir", mono_env(DTQ_DATA_DIR=""), "DTQ_DATA_DIR must not be empty"),
    ("unknown store", mono_env(DTQ_STORE="redis"), "DTQ_STORE must be one of sqlite, memory"),
    ("negative slots", mono_env(DTQ_SLOTS="-1"), "DTQ_SLOTS must be >= 0"),
    ("slots not a number", mono_env(DTQ_SLOTS="two"), "DTQ_SLOTS must be an integer"),
    ("mono not in its peers", mono_env(DTQ_PEERS="n2=127.0.0.1:5002"), "DTQ_PEERS must list this node (n1)"),
    ("peer without address", mono_env(DTQ_PEERS="n1"), "DTQ_PEERS: 'n1' must be name=host:port"),
    ("peer twice", mono_env(DTQ_PEERS="n1=a:1,n1=b:2"), "'n1' is given twice"),
    ("bad peer name", mono_env(DTQ_PEERS="n1=a:1,N2=b:2"), "DTQ_PEERS: node name 'N2'"),
    ("bad peer address", mono_env(DTQ_PEERS="n1=a:b"), "DTQ_PEERS: address 'a:b'"),
    ("peer range without {i}", mono_env(DTQ_PEERS="n1..n3=node:1"), "needs {i} (the number)"),
    ("peer range of two prefixes", mono_env(DTQ_PEERS="n1..m3=m{i}:1"), "must be like n1..n12"),
    ("peer range counting down", mono_env(DTQ_PEERS="n3..n1=n{i}:1"), "must count up from >= 1"),
    ("peer range from zero", mono_env(DTQ_PEERS="n0..n2=n{i}:1"), "must count up from >= 1"),
    ("peer range too long", mono_env(DTQ_PEERS="n1..n101=n{i}:1"), "at most 100 names"),
    ("peer range overlapping", mono_env(DTQ_PEERS="n1..n3=n{i}:1,n3=x:1"), "'n3' is given twice"),
    ("peer range bad address", mono_env(DTQ_PEERS="n1..n2=n{i}"), "DTQ_PEERS: address 'n1'"),
    ("unknown service", micro_env(DTQ_SERVICES=SERVICES + ",db=h:1"), "unknown role 'db'"),
    ("unknown gc mode", mono_env(DTQ_GC="sometimes"), "DTQ_GC"),
    (
        "gateway without job",
        micro_env("gateway", DTQ_SERVICES="result=h:1,coordinator=h:2"),
        "gateway calls job",
    ),
    ("worker without coordinator", micro_env("worker", DTQ_SERVICES=""), "worker calls coordinator"),
    ("metrics port below -1", mono_env(DTQ_METRICS_PORT="-2"), "DTQ_METRICS_PORT must be >= -1"),
    ("metrics port too big", mono_env(DTQ_METRICS_PORT="65536"), "DTQ_METRICS_PORT must be <= 65535"),
    ("zero rpc timeout", mono_env(DTQ_RPC_TIMEOUT="0"), "DTQ_RPC_TIMEOUT must be > 0"),
    ("nan rpc timeout", mono_env(DTQ_RPC_TIMEOUT="nan"), "DTQ_RPC_TIMEOUT must be finite"),
    ("infinite drain", mono_env(DTQ_DRAIN_TIMEOUT="inf"), "DTQ_DRAIN_TIMEOUT must be finite"),
    ("negative fetch wait", mono_env(DTQ_FETCH_WAIT="-1"), "DTQ_FETCH_WAIT must be >= 0"),
    ("zero steal interval", mono_env(DTQ_STEAL_INTERVAL="0"), "DTQ_STEAL_INTERVAL must be > 0"),
    ("negative steal fanout", mono_env(DTQ_STEAL_FANOUT="-1"), "DTQ_STEAL_FANOUT must be >= 0"),
    ("unknown log level", mono_env(DTQ_LOG_LEVEL="loud"), "DTQ_LOG_LEVEL must be one of"),
    ("core not a number", mono_env(DTQ_MAX_PENDING="lots"), "DTQ_MAX_PENDING must be an integer"),
    ("core float garbage", mono_env(DTQ_LEASE_DURATION="10s"), "DTQ_LEASE_DURATION must be a number"),
    (
        "core rule",
        mono_env(DTQ_LEASE_DURATION="1", DTQ_HEARTBEAT_INTERVAL="2"),
        "core config (DTQ_*): heartbeat_interval must be shorter than lease_duration",
    ),
    # issue 26: replies must fit the message limit; one job must fit a reply; slots are capped
    (
        "reply over the limit",
        mono_env(DTQ_MAX_REPLY_BYTES=str(5 << 20)),
        "DTQ_MAX_REPLY_BYTES must be at most",
    ),
    (
        "reply below one job",
        mono_env(DTQ_MAX_REPLY_BYTES=str(1 << 20)),
        "max_reply_bytes (1048576) must hold",
    ),
    ("negative byte budget", mono_env(DTQ_MAX_RETAINED_BYTES="-1"), "max_retained_bytes must be >= 0"),
    (
        "slots over the cap",
        mono_env(DTQ_SLOTS="9", DTQ_MAX_WORKER_SLOTS="8"),
        "must not exceed DTQ_MAX_WORKER_SLOTS",
    ),
    ("unknown policy", mono_env(DTQ_POLICY="lottery"), "policy must be one of concurrency, fair, fifo"),
    ("bad weights", mono_env(DTQ_POLICY="fair", DTQ_POLICY_WEIGHTS="x:1"), "policy_weights is KEY=WEIGHT"),
    ("bad limit", mono_env(DTQ_POLICY="concurrency", DTQ_POLICY_LIMIT="0"), "policy_limit >= 1"),
    ("limit garbage", mono_env(DTQ_POLICY_LIMIT="two"), "DTQ_POLICY_LIMIT must be an integer"),
    (
        "concurrency in Design A",
        micro_env("queue", DTQ_POLICY="concurrency"),
        "DTQ_POLICY: policy concurrency counts running jobs",
    ),
]


def test_policy_settings_are_read_and_written_back() -> None:
    env = mono_env(DTQ_POLICY="fair", DTQ_POLICY_KEY="team", DTQ_POLICY_WEIGHTS="x=1,y=4")
    config = load_config(env)
    assert (config.core.policy, config.core.policy_key, config.core.policy_weights) == (
        "fair",
        "team",
        "x=1,y=4",
    )
    assert config_to_env(config)["DTQ_POLICY"] == "fair"  # a string as it is, not its repr
    assert load_config(config_to_env(config)) == config
    rate = load_config(micro_env("queue", DTQ_POLICY="ratelimit", DTQ_POLICY_RATE="5", DTQ_POLICY_BURST="2"))
    assert (rate.core.policy_rate, rate.core.policy_burst) == (5.0, 2.0)


@pytest.mark.parametrize(("env", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_invalid(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        load_config(env)
    assert message in info.value.message


def test_services_may_list_every_role() -> None:
    """The cluster launcher hands every process the whole address table, the worker's included."""
    config = load_config(micro_env("job", DTQ_SERVICES=SERVICES + ",worker=127.0.0.1:5005"))
    assert config.services["worker"] == "127.0.0.1:5005"


def test_every_micro_role_needs_exactly_what_it_calls() -> None:
    for role in MICRO_ROLES:
        services = {s: f"h:{i + 1}" for i, s in enumerate(CALLS[role])}
        env = micro_env(role, DTQ_SERVICES=",".join(f"{k}={v}" for k, v in services.items()))
        assert dict(load_config(env).services) == services
        for missing in CALLS[role]:
            rest = ",".join(f"{k}={v}" for k, v in services.items() if k != missing)
            with pytest.raises(InvalidArgument, match=missing):
                load_config(micro_env(role, DTQ_SERVICES=rest))


def test_peer_range_names_every_node_with_its_number() -> None:
    """An orchestrator's files name N nodes in one item: n1..nN with {i} in the address."""
    config = load_config(mono_env(DTQ_NAME="n2", DTQ_PEERS="n1..n12=n-{i}.dtq-mono:50051"))
    assert list(config.peers) == [f"n{i}" for i in range(1, 13)]
    assert config.peers["n12"] == "n-12.dtq-mono:50051"
    mixed = load_config(mono_env(DTQ_PEERS="n1..n2=10.0.0.{i}:7000,extra=h:1"))
    assert dict(mixed.peers) == {"n1": "10.0.0.1:7000", "n2": "10.0.0.2:7000", "extra": "h:1"}
    assert load_config(config_to_env(config)) == config  # written back as the explicit list


# ---------------------------------------------------------------------------- what `dtq serve --help` lists
class Recording(dict[str, str]):
    """An environment that remembers every variable asked for."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def test_the_settings_table_is_exactly_what_the_loader_reads() -> None:
    asked: set[str] = set()
    for env in (mono_env(), micro_env("worker"), micro_env("gateway")):
        recording = Recording(env)
        load_config(recording)
        asked |= recording.asked
    documented = [s.var for s in (*SETTINGS, *core_settings())]
    assert len(documented) == len(set(documented))
    assert asked == set(documented)
    assert set(CORE_MEANINGS) == {f.name for f in dataclasses.fields(CoreConfig)}
    assert all(s.meaning for s in (*SETTINGS, *core_settings()))
    text = settings_help()
    assert all(f"  {var}: " in text for var in documented)


def test_the_defaults_shown_are_the_ones_applied() -> None:
    config = load_config(mono_env())
    shown = {s.var: s.default_text() for s in (*SETTINGS, *core_settings())}
    assert shown["DTQ_LISTEN"] == config.listen and shown["DTQ_STORE"] == config.store
    assert shown["DTQ_DATA_DIR"] == str(config.data_dir)
    assert float(shown["DTQ_RPC_TIMEOUT"]) == config.rpc_timeout
    assert int(shown["DTQ_METRICS_PORT"]) == config.metrics_port
    assert shown["DTQ_GC"] == config.gc_mode and shown["DTQ_LOG_LEVEL"] == config.log_level
    assert float(shown["DTQ_LEASE_DURATION"]) == config.core.lease_duration
    assert int(shown["DTQ_MAX_PENDING"]) == config.core.max_pending


def test_a_misspelt_setting_is_named_and_other_tools_variables_pass() -> None:
    env = {
        "DTQ_LEASE_DURATON": "5",  # typo of a core setting
        "DTQ_SLOT": "3",  # typo of a node setting
        "DTQ_SLOTS": "2",
        "DTQ_TOKEN": "t",  # the client's
        "DTQ_NODE_SLOTS": "4",  # docker/compose.mono.yml's
        "DTQ_BASELINE_REDIS_URL": "redis://x",
        "DTQ_IMAGE": "dtq:latest",
        "HOME": "/root",
    }
    assert misspelt_settings(env) == [
        "DTQ_LEASE_DURATON is not a setting (did you mean DTQ_LEASE_DURATION?); ignored",
        "DTQ_SLOT is not a setting (did you mean DTQ_SLOTS?); ignored",
    ]
    assert misspelt_settings({"DTQ_ROLE": "node", "DTQ_NAME": "n1"}) == []
