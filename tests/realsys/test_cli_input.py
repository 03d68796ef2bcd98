"""`dtq`, tried as a new user would, with wrong input on purpose: every wrong invocation ends with one
line on stderr (no traceback), nothing on stdout, and the exit code of its kind (realsys/cli_common.py
`Exit`); and the outcome of a job decides the exit code of `submit --wait` and `result`."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from realsys import cluster, logs
from realsys.cli import main
from realsys.cli_common import Exit

WORKLOAD = "arrival: {kind: open, rate: 10}\nmix: {submit: 1.0}\nrun_time: 1\nseed: 1\n"


def dtq(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `dtq ARGV`, run in this process."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else Exit.OK if code is None else Exit.USAGE), out, err


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with good and bad input files, a fake cluster directory (one node, n1,
    whose pid is not running) and committed-looking rows under data/faults/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.yaml").write_text(WORKLOAD)
    (tmp_path / "bad.yaml").write_text("arrival: {kind: open, rate: 10\nmix: [\n")
    (tmp_path / "bad.toml").write_text('seed = 1\narrival = {kind = "open"\n')
    (tmp_path / "negative.yaml").write_text(WORKLOAD.replace("rate: 10", "rate: -3"))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "workload.txt").write_text(WORKLOAD)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "badexp.yaml").write_text("name: x\nsweep: [1\n")
    (tmp_path / "badcal.json").write_text("{")
    (tmp_path / "keys.json").write_text('{"parameters": {"nosuch": 1}}')
    (tmp_path / "spans").mkdir()
    (tmp_path / "oldruns" / "r1").mkdir(parents=True)
    fake = tmp_path / "fake"
    fake.mkdir()
    node = {"name": "n1", "role": "node", "address": "127.0.0.1:1", "pid": 2**22 + 1, "env": {}}
    (fake / cluster.CLUSTER_FILE).write_text(
        json.dumps({"design": "mono", "clients": ["127.0.0.1:1"], "nodes": [node]})
    )
    for design in ("mono", "micro"):
        (tmp_path / "data" / "faults").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "faults" / f"sim-{design}.json").write_text("[]\n")
        (tmp_path / "data" / "faults" / f"real-{design}.json").write_text("[]\n")
    return tmp_path


UNREACHABLE = "127.0.0.1:{port}"
# (argv, exit code, what the one line must contain); {port} is a closed loopback port
WRONG: list[tuple[list[str], int, str]] = [
    # usage
    ([], Exit.USAGE, "required: COMMAND"),
    (["nosuchcommand"], Exit.USAGE, "invalid choice"),
    (["submit"], Exit.USAGE, "required"),
    (["cluster", "up", "--design", "mono"], Exit.USAGE, "--dir"),
    # workload and other input files: the file and the line are named
    (
        ["load", "--addr", UNREACHABLE, "--design", "mono", "--workload", "bad.yaml"],
        Exit.USAGE,
        "bad.yaml: line 2",
    ),
    (
        ["sim", "--design", "mono", "--workload", "bad.yaml", "--runs-dir", ""],
        Exit.USAGE,
        "bad.yaml: line 2, column",
    ),
    (
        ["sim", "--design", "mono", "--workload", "bad.toml", "--runs-dir", ""],
        Exit.USAGE,
        "bad.toml: not valid TOML",
    ),
    (
        ["sim", "--design", "mono", "--workload", "negative.yaml"],
        Exit.USAGE,
        "negative.yaml: workload.arrival",
    ),
    (
        ["sim", "--design", "mono", "--workload", "list.yaml"],
        Exit.USAGE,
        "list.yaml: a workload file holds one",
    ),
    (["sim", "--design", "mono", "--workload", "workload.txt"], Exit.USAGE, "workload.txt: expected a .yaml"),
    (["sim", "--design", "mono", "--workload", "binary.yaml"], Exit.USAGE, "binary.yaml: not UTF-8"),
    (["sim", "--design", "mono", "--workload", "missing.yaml"], Exit.USAGE, "missing.yaml: No such file"),
    (["sim", "--design", "mono"], Exit.USAGE, "needs --workload"),
    (["sim", "--design", "mono", "--workload", "ok.yaml", "--calibration", "nope"], Exit.USAGE, "nope.json"),
    (
        ["sim", "--design", "mono", "--workload", "ok.yaml", "--calibration", "badcal.json"],
        Exit.USAGE,
        "badcal.json: line 1",
    ),
    (["sim", "--design", "mono", "--workload", "ok.yaml", "--set", "cores"], Exit.USAGE, "key=value"),
    (["sim", "--design", "mono", "--workload", "ok.yaml", "--nodes", "-2"], Exit.USAGE, "--nodes"),
    # a flag the mode does not read
    (
        ["sim", "--design", "mono", "--workload", "ok.yaml", "--lease", "3"],
        Exit.USAGE,
        "--lease is for `dtq sim faults`",
    ),
    (
        ["sim", "faults", "--design", "mono", "--workload", "ok.yaml"],
        Exit.USAGE,
        "--workload is for `dtq sim run`",
    ),
    (["sim", "--design", "mono", "--workload", "ok.yaml", "--out", "x"], Exit.USAGE, "--runs-dir"),
    (["sim", "faults", "--design", "mono", "--lease", "2,5"], Exit.USAGE, "--leases"),
    # committed results are replaced only when named
    (["report", "--data", "nonexistent"], Exit.USAGE, "no data directory nonexistent"),
    # the client commands
    (["submit", "--addr", UNREACHABLE, "echo", "--label", "foo"], Exit.USAGE, "--label: expected KEY=VALUE"),
    (["submit", "--addr", UNREACHABLE, "echo", "--label", "=v"], Exit.USAGE, "KEY=VALUE"),
    (
        ["submit", "--addr", UNREACHABLE, "echo", "--payload-file", "nofile"],
        Exit.USAGE,
        "nofile: No such file",
    ),
    (
        ["submit", "--addr", UNREACHABLE, "echo", "--payload", "a", "--payload-file", "ok.yaml"],
        Exit.USAGE,
        "not allowed",
    ),
    (["submit", "--addr", UNREACHABLE, "echo", "--priority", "99999999999"], Exit.USAGE, "--priority"),
    (["submit", "--addr", UNREACHABLE, "echo", "--wait", "-1"], Exit.USAGE, "--wait"),
    (["submit", "--addr", UNREACHABLE, "echo", "--execution-timeout", "nan"], Exit.USAGE, "number >= 0"),
    (["submit", "--addr", UNREACHABLE, "echo", "--timeout", "0"], Exit.USAGE, "--timeout"),
    (["submit", "--addr", UNREACHABLE, "--token", "t" * 20, "echo"], Exit.USAGE, "needs TLS"),
    (["submit", "--addr", UNREACHABLE, "--ca", "missing.pem", "echo"], Exit.USAGE, "missing.pem: No such"),
    (["status", "--addr", UNREACHABLE, "--timeout", "2", "n1-1-0000000001"], Exit.RPC, "UNAVAILABLE"),
    (["status", "--dir", "nocluster", "n1-1-0000000001"], Exit.USAGE, "no cluster at nocluster"),
    (["status", "--addr", "nonsense", "n1-1-0000000001"], Exit.USAGE, "'nonsense' must be host:port"),
    (["status", "--addr", "localhost:99999", "n1-1-0000000001"], Exit.USAGE, "must be host:port"),
    (["status", "--dir", ".", "n1-1-0000000001"], Exit.USAGE, "missing cluster.json"),
    (["list", "--addr", UNREACHABLE, "--created-after", "yesterday"], Exit.USAGE, "ISO 8601"),
    (["list", "--addr", UNREACHABLE, "--page-size", "-3"], Exit.USAGE, "--page-size"),
    (["list", "--addr", UNREACHABLE, "--state", "done"], Exit.USAGE, "invalid choice"),
    (
        ["load", "--addr", UNREACHABLE, "--workload", "ok.yaml"],
        Exit.USAGE,
        "--design is required with --addr",
    ),
    (
        ["load", "--addr", UNREACHABLE, "--design", "mono", "--workload", "ok.yaml", "--timeout", "1"],
        Exit.RPC,
        "UNAVAILABLE: 127.0.0.1:",  # and nothing was measured: no run directory
    ),
    # local clusters: nothing is started
    (["cluster", "kill", "--dir", "fake", "n9"], Exit.USAGE, "no node named 'n9'"),
    (["cluster", "start", "--dir", "fake", "n9"], Exit.USAGE, "its nodes: n1"),
    (["cluster", "kill", "--dir", "nocluster", "n1"], Exit.USAGE, "no cluster at nocluster"),
    (["cluster", "kill", "--dir", "fake", "n1", "--signal", "HUP"], Exit.USAGE, "invalid choice"),
    (["cluster", "down", "--dir", "nocluster"], Exit.USAGE, "no cluster"),
    (["cluster", "up", "--design", "mono", "--dir", "c", "--nodes", "5"], Exit.USAGE, "does not divide"),
    (["cluster", "up", "--design", "mono", "--dir", "c", "--slots", "0"], Exit.USAGE, "--slots"),
    (
        ["cluster", "up", "--design", "mono", "--dir", "c", "--lease", "2", "--heartbeat", "3"],
        Exit.USAGE,
        "heartbeat",
    ),
    (["cluster", "up", "--design", "mono", "--dir", "c", "--lease", "-5"], Exit.USAGE, "--lease"),
    (
        ["cluster", "up", "--design", "micro", "--dir", "c", "--nodes", "3"],
        Exit.USAGE,
        "--nodes is for Design B",
    ),
    # a calibration whose key is wrong names its file; a directory is not looked for as DIR.json
    (["sim", "params", "--calibration", "keys.json"], Exit.USAGE, "keys.json: unknown simulator parameter"),
    (["sim", "params", "--calibration", "spans"], Exit.USAGE, "--calibration spans: a directory"),
    # where dtq load would write, refused before the load (it ran the load, then refused to write it)
    (
        ["load", "--dir", "fake", "--workload", "ok.yaml", "--runs-dir", "oldruns", "--run-id", "r1"],
        Exit.USAGE,
        "run oldruns/r1 exists",
    ),
    (
        ["load", "--dir", "fake", "--workload", "ok.yaml", "--runs-dir", "ok.yaml"],
        Exit.USAGE,
        "ok.yaml: is a file",
    ),
    (["load", "--dir", "fake", "--workload", "ok.yaml", "--run-id", "../r"], Exit.USAGE, "bad run id '../r'"),
    # one label key with two values: refused (the last one silently won)
    (
        ["submit", "--dir", "fake", "echo", "--label", "a=b", "--label", "a=c"],
        Exit.USAGE,
        "--label a: given twice",
    ),
    (["list", "--dir", "fake", "--label", "a=b", "--label", "a=c"], Exit.USAGE, "--label a: given twice"),
    (
        ["cluster", "up", "--design", "mono", "--dir", "c", "--trace-dir", "ok.yaml"],
        Exit.USAGE,
        "--trace-dir ok.yaml: is a file",
    ),  # was exit 1 from the first node that failed to start
    (
        ["sim", "params", "--set", "cpu_slice=0.001", "--set", "cpu_slice=0.002"],
        Exit.USAGE,
        "--set cpu_slice: given twice (0.001 and 0.002)",
    ),  # the last one won silently
    (
        ["sim", "params", "--set", "workload.arrival.rate=10"],
        Exit.USAGE,
        "the workload's fields are set in its file",
    ),
    (["sim", "sweep", "spans"], Exit.USAGE, "sweep file spans: a directory"),  # was "no such file"
    # a file as a cluster's directory (was "[Errno 17] File exists: ...")
    (
        ["cluster", "up", "--design", "mono", "--dir", "ok.yaml"],
        Exit.USAGE,
        "ok.yaml: is a file, not a cluster",
    ),
    (["trace", "n1-1-0000000001", "--dir", "nocluster"], Exit.USAGE, "no cluster at nocluster"),
    (["trace", "n1-1-0000000001", "--dir", "fake"], Exit.USAGE, "does not trace"),
    (["trace", "n1-1-0000000001", "--trace-dir", "spans"], Exit.USAGE, "no spans of job"),
    (["deploy", "compose", "--design", "mono", "--nodes", "abc"], Exit.USAGE, "--nodes"),
    (["demo", "--jobs", "0"], Exit.USAGE, "--jobs"),
    # the lab
    (["experiment", "run", "badexp.yaml", "--dry-run"], Exit.USAGE, "badexp.yaml: line 3"),
    (["experiment", "run", "missing.yaml"], Exit.USAGE, "missing.yaml: No such file"),
    (["validate", "badexp.yaml"], Exit.USAGE, "badexp.yaml: line 3"),
    (
        ["faults", "run", "--design", "mono", "--faults", "bogus", "--out", "rows.json"],
        Exit.USAGE,
        "unknown fault",
    ),
    (
        ["faults", "run", "--design", "mono", "--fault-at", "2", "--out", "rows.json"],
        Exit.USAGE,
        "--fault-at",
    ),
    (["faults", "run", "--design", "mono", "--lease", "0"], Exit.USAGE, "--lease"),
    # an --out that cannot take the rows: refused before the runs (it failed after them)
    (["faults", "run", "--design", "mono", "--out", "."], Exit.USAGE, "--out .: is a directory"),
    (["faults", "run", "--design", "mono", "--out", "rows.csv"], Exit.USAGE, "the .csv table goes beside it"),
    (["sim", "faults", "--design", "mono", "--out", ".", "-q"], Exit.USAGE, "--out .: is a directory"),
    (["diagnose", "mono", "-3"], Exit.USAGE, "rate > 0"),
    (["calibrate", "--rounds", "0", "--name", "x"], Exit.USAGE, "rounds"),
    # a flag the command does not have: named with that command's help, not `dtq --help`
    (
        ["list", "--dir", "c", "--limit", "3"],
        Exit.USAGE,
        "dtq list: error: unrecognized arguments: --limit 3 (see `dtq list --help`)",
    ),
    (["sim", "params", "--bogus"], Exit.USAGE, "dtq sim: error: unrecognized arguments: --bogus"),
    # the paper's calibration, refused before measuring (it used to measure, then replace it)
    (["calibrate", "--name", "local", "--quick"], Exit.USAGE, "local.json exists: --force replaces it"),
    (["soak", "--overload", "0.5"], Exit.USAGE, "--overload"),
    (["bench", "--runs", "0"], Exit.USAGE, "--runs"),
]


@pytest.mark.parametrize(("argv", "code", "says"), WRONG, ids=[" ".join(a) or "(none)" for a, _, _ in WRONG])
def test_wrong_input_is_one_line_and_its_exit_code(
    files: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, says: str
) -> None:
    port = closed_port()
    got, out, err = dtq(capsys, *(a.replace("{port}", str(port)) for a in argv))
    lines = err.splitlines()
    assert got == code, (got, err)
    assert len(lines) == 1 and lines[0].startswith("dtq"), err
    assert says in lines[0] and "Traceback" not in err
    assert out == ""
    assert not (files / "c").exists()  # no cluster was started (nor its directory made)
    assert not (files / "data" / "runs").exists()  # nor a run written


def test_serve_with_bad_settings_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in [v for v in os.environ if v.startswith("DTQ_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("DTQ_ROLE", "node")
    code, out, err = dtq(capsys, "serve")
    assert code == Exit.USAGE and out == ""
    assert err.splitlines() == ["dtq: bad configuration: DTQ_NAME is required for DTQ_DESIGN=mono (e.g. n1)"]


@pytest.mark.parametrize("setting", ["DTQ_LISTEN", "DTQ_METRICS_PORT"])
def test_serve_on_a_port_in_use_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """A taken port is a bad setting named in one line (it was a logged traceback and exit 1)."""
    for var in [v for v in os.environ if v.startswith("DTQ_")]:
        monkeypatch.delenv(var)
    # serve runs in this process: its logging set-up (root handlers, the process's node) is undone
    monkeypatch.setattr(logs, "_process_node", ["", ""])
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", root.handlers[:])
    monkeypatch.setattr(root, "level", root.level)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("DTQ_ROLE", "node")
        monkeypatch.setenv("DTQ_NAME", "n1")
        monkeypatch.setenv("DTQ_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("DTQ_PEERS", "n1=127.0.0.1:0")
        if setting == "DTQ_LISTEN":
            monkeypatch.setenv("DTQ_LISTEN", f"127.0.0.1:{port}")
        else:
            monkeypatch.setenv("DTQ_METRICS_PORT", str(port))
        code, out, err = dtq(capsys, "serve")
    assert code == Exit.USAGE and out == "", err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dtq: bad configuration: {setting} "), err
    assert str(port) in lines[0] and "Traceback" not in err
    assert not (tmp_path / "n1.addr").exists()  # it never announced an address


def test_version_help_and_deprecated_spellings(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = dtq(capsys, "--version")
    assert code == Exit.OK and out.startswith("dtq ") and out.strip() != "dtq"
    code, out, _ = dtq(capsys, "--help")
    assert code == Exit.OK and "exit codes:" in out and "5  --wait ran out" in out
    code, out, _ = dtq(capsys, "serve", "--help")
    assert code == Exit.OK and "DTQ_RPC_TIMEOUT: deadline of every internal hop (s) [default: 5.0]" in out
    assert "DTQ_LEASE_DURATION: " in out and "[default: 10.0]" in out
    code, out, _ = dtq(capsys, "cluster", "up", "--help")
    assert code == Exit.OK and "(default: sqlite)" in out and "(default: 12)" in out
    # an old spelling still works, and says which to use
    code, out, err = dtq(capsys, "sim", "--design", "mono", "--workload", "ok.yaml", "--out", "runs")
    assert code == Exit.USAGE  # --out changed meaning in `dtq sim`: refused, not taken silently
    code, out, err = dtq(capsys, "sim", "faults", "--design", "mono", "--faults-out", "x", "--out", "y")
    assert code == Exit.USAGE and "deprecated: use --out" in err


def test_progress_lines_go_to_stderr_and_quiet_silences_them(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sim", "--design", "mono", "--workload", "ok.yaml", "--runs-dir", ""]
    code, out, err = dtq(capsys, *argv)
    assert code == Exit.OK and out.strip(), out
    assert "dtq sim: [" in err and "simulating sim-mono-ok-1-r0" in err
    code, quiet_out, quiet_err = dtq(capsys, *argv, "--quiet")
    assert code == Exit.OK and quiet_out == out
    # --quiet silences progress, not warnings: the placeholder costs are still named, and nothing else is said
    assert "dtq sim: [" not in quiet_err and quiet_err.startswith("warning: ") and "placeholders" in quiet_err
    warning = [line for line in err.splitlines(keepends=True) if not line.startswith("dtq sim: [")]
    assert quiet_err == "".join(warning)


# ---------------------------------------------------------------------------- against a cluster
@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("cli") / "b"
    with cluster.running("mono", directory, store="memory", total_slots=2, nodes=1, grace=5):
        yield directory


def test_job_outcomes_decide_the_exit_code(one_node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(one_node)
    code, out, err = dtq(capsys, "submit", "--dir", d, "echo", "--payload", '{"a": [1, 2]}', "--wait", "10")
    assert (code, out, err) == (Exit.OK, '{"a": [1, 2]}\n', "")
    code, out, err = dtq(capsys, "submit", "--dir", d, "echo", "--payload", "plain words", "--wait", "10")
    assert (code, out) == (Exit.OK, "plain words\n")
    binary = one_node.parent / "binary"
    binary.write_bytes(bytes(range(256)))
    code, out, err = dtq(capsys, "submit", "--dir", d, "echo", "--payload-file", str(binary), "--wait", "10")
    assert code == Exit.OK and "is not text: base64 follows" in err
    assert base64.b64decode(out) == bytes(range(256))
    code, out, err = dtq(
        capsys, "submit", "--dir", d, "echo", "--payload", "x", "--wait", "10", "--format", "base64"
    )
    assert (code, out) == (Exit.OK, "eA==\n")
    code, out, err = dtq(
        capsys,
        "submit",
        "--dir",
        d,
        "fail",
        "--payload",
        '{"probability": 1}',
        "--max-attempts",
        "1",
        "--wait",
        "10",
    )
    assert code == Exit.JOB_FAILED and out == ""
    assert len(err.splitlines()) == 1 and "ended FAILED: HANDLER_ERROR" in err
    code, out, err = dtq(
        capsys, "submit", "--dir", d, "sleep", "--payload", '{"seconds": 5}', "--wait", "0.3"
    )
    assert code == Exit.NOT_DONE and "is still" in err and "after --wait 0.3 s" in err
    job_id = err.split("job ", 1)[1].split()[0]
    code, out, err = dtq(capsys, "result", "--dir", d, job_id)
    assert code == Exit.NOT_DONE and "no result yet" in err
    code, _, err = dtq(capsys, "cancel", "--dir", d, job_id)
    assert code == Exit.OK
    code, out, err = dtq(capsys, "result", "--dir", d, job_id, "--wait", "10", "--format", "json")
    assert (
        code == Exit.JOB_FAILED
        and "ended CANCELLED" in err
        and json.loads(out)["job"]["state"] == "CANCELLED"
    )
    # errors from the cluster: INVALID_ARGUMENT is bad input (2), others are RPC errors (3)
    code, _, err = dtq(capsys, "result", "--dir", d, "n1-xx")
    assert code == Exit.USAGE and err.startswith("dtq result: INVALID_ARGUMENT: ")
    code, _, err = dtq(capsys, "submit", "--dir", d, "echo", "--max-attempts", "1000")
    assert code == Exit.USAGE and "INVALID_ARGUMENT" in err
    code, _, err = dtq(capsys, "result", "--dir", d, "n1-1-00000000ff")
    assert code == Exit.RPC and err.startswith("dtq result: NOT_FOUND: ") and len(err.splitlines()) == 1
    code, _, err = dtq(capsys, "cancel", "--dir", d, job_id)
    assert code == Exit.RPC and err.startswith("dtq cancel: FAILED_PRECONDITION: ")
    code, _, err = dtq(capsys, "cluster", "kill", "--dir", d, "n9")
    assert code == Exit.USAGE and err.splitlines() == [
        f"dtq cluster kill: no node named 'n9' in {one_node}; its nodes: n1"
    ]


def test_list_filters_by_label_and_creation_time(one_node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(one_node)
    code, out, _ = dtq(capsys, "submit", "--dir", d, "echo", "--label", "team=blue", "--label", "k=a=b")
    job_id = json.loads(out)["job_id"]
    code, out, _ = dtq(capsys, "list", "--dir", d, "--label", "team=blue", "--label", "k=a=b", "--all")
    assert code == Exit.OK and [json.loads(line)["job_id"] for line in out.splitlines()] == [job_id]
    created = json.loads(out)["create_time"]
    code, out, _ = dtq(
        capsys, "list", "--dir", d, "--label", "team=blue", "--created-after", created, "--all"
    )
    assert [json.loads(line)["job_id"] for line in out.splitlines()] == [job_id]  # inclusive
    code, out, _ = dtq(
        capsys, "list", "--dir", d, "--label", "team=blue", "--created-before", created, "--all"
    )
    assert out == ""  # exclusive
    code, out, _ = dtq(capsys, "list", "--dir", d, "--created-after", "2999-01-01", "--page-size", "5")
    assert code == Exit.OK and out.splitlines() == ['{"next_page_token": ""}']
