"""`dtq sim` writes a run directory in the shared schema, with kind "sim"; a what-if's id carries its
overrides' hash; nothing is replaced without --force; `dtq sim params` lists every key; wrong input
(keys, values, paths) is one line on stderr and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.results.runs import load_config, load_records, load_summary
from realsys.cli import main
from sim.api import overrides_hash
from sim.hostscale import HostScale
from sim.keys import KEYS
from sim.params import load_params

WORKLOAD = """
arrival: {kind: open, rate: 100, max_in_flight: 64}
mix: {submit: 0.8, status: 0.2}
duration: {kind: exponential, mean: 0.02}
run_time: 1
warmup: 0.2
seed: 3
"""


def test_dtq_sim_writes_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(WORKLOAD)
    out = tmp_path / "runs"
    argv = ["sim", "--design", "mono", "--workload", str(workload), "--nodes", "3"]
    argv += ["--set", "cores=4", "--set", "core.lease_duration=5", "--runs-dir", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    digest = overrides_hash([("cores", 4), ("core.lease_duration", 5), ("nodes", 3)])
    run_dir = out / f"sim-mono-tiny-w{digest}-3-r0"
    config, summary = load_config(run_dir), load_summary(run_dir)
    assert config["kind"] == summary["kind"] == "sim" and config["design"] == "mono"
    assert config["parameters"]["params"]["nodes"] == 3 and config["parameters"]["params"]["cores"] == 4
    assert config["parameters"]["overrides"] == [["cores", 4], ["core.lease_duration", 5], ["nodes", 3]]
    requests, jobs = load_records(run_dir)
    assert len(requests) == summary["latency_ms"]["all"]["count"] + sum(
        r.intended_time < 0.2 for r in requests
    )
    assert {j.job_id.split("-")[0] for j in jobs} == {"n1", "n2", "n3"}
    assert "run written to" in capsys.readouterr().out


def _dtq(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_a_run_is_replaced_only_with_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(WORKLOAD)
    argv = ["sim", "--design", "mono", "--workload", str(workload), "--runs-dir", str(tmp_path / "runs")]
    assert _dtq(argv, capsys)[0] == 0
    code, _, err = _dtq(argv, capsys)
    assert code == 2 and "exists: --force replaces it" in err and len(err.strip().splitlines()) == 1
    assert _dtq([*argv, "--force"], capsys)[0] == 0
    # the baseline and a what-if never share a folder
    assert _dtq([*argv, "--set", "network.scale=2"], capsys)[0] == 0
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert names == ["sim-mono-tiny-3-r0", f"sim-mono-tiny-w{overrides_hash([('network.scale', 2)])}-3-r0"]


def test_placeholder_costs_are_named_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(WORKLOAD)
    argv = ["sim", "--design", "mono", "--workload", str(workload), "--runs-dir", ""]
    code, _, err = _dtq(argv, capsys)
    assert code == 0 and "are placeholders" in err and "service.node.SubmitJob" in err
    code, _, err = _dtq([*argv, "--calibration", "local"], capsys)
    assert code == 0 and "service.node.SubmitJob" not in err  # measured
    assert "service.node.timer" in err  # not measured by the calibration: still a placeholder


def test_params_lists_every_key_with_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _dtq(["sim", "params", "--calibration", "local", "--set", "network.scale=2"], capsys)
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert set(lines) == set(KEYS)
    assert lines["network"][-2] == "override"
    assert lines["service.node.SubmitJob"][-2] == "measured"
    assert lines["service.node.timer"][-2] == "placeholder"
    assert lines["fetch_wait"][-2] == "default"
    code, out, _ = _dtq(["sim", "params", "--design", "micro", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0 and all("A" in r["designs"] for r in rows) and "nodes" not in {r["key"] for r in rows}
    sources = {r["key"]: r["source"] for r in rows}
    assert sources["service.gateway.SubmitJob"] == sources["network"] == "placeholder"
    assert sources["service.gateway.ListJobs.relay"] == "default"  # 0: charged under another name


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "netwrk.mean=1"], "nearest: network.mean"),
        (["--set", "service.node.SubmitJb=0.001"], "nearest: service.node.SubmitJob"),
        (["--set", "cores=two"], "cores: expected an integer"),
        (["--set", "cores=2.5"], "cores: expected an integer"),
        (["--set", "network=exponential(x)"], "exponential(mean) takes 1 number"),
        (["--set", "network.sigma=0.5", "--calibration", "local"], "sigma belongs to lognormal"),
        (["--set", "network.kind=constant"], "replace the whole distribution"),
        (["--set", "host_hop=0.001"], "host_hop has no effect"),
        (["--set", "noequals"], "--set expects key=value"),
        (["--calibration", "nope"], "no calibration 'nope'"),
        (["--workload", "/nonexistent.yaml"], "No such file"),
    ],
)
def test_wrong_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(WORKLOAD)
    argv = [
        "sim",
        "--design",
        "mono",
        "--workload",
        str(workload),
        "--runs-dir",
        str(tmp_path / "runs"),
        *extra,
    ]
    code, _, err = _dtq(argv, capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_key_the_design_does_not_read_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(WORKLOAD)
    for design, key in (
        ("micro", "nodes=3"),
        ("micro", "service.node.SubmitJob.scale=2"),
        ("mono", "sweep_interval=5"),
    ):
        argv = ["sim", "--design", design, "--workload", str(workload), "--runs-dir", "", "--set", key]
        code, _, err = _dtq(argv, capsys)
        assert code == 2 and "has no effect on" in err, err


def test_sim_faults_writes_beside_existing_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default rows file: data/faults/sim-mono.json under the checkout
    out = tmp_path / "data" / "faults"
    out.mkdir(parents=True)
    (out / "sim-mono.json").write_text("[]\n")
    argv = ["sim", "faults", "--design", "mono", "--lease", "2", "--heartbeat", "0.5", "--fault", "pause"]
    argv += ["--after", "2"]
    code, stdout, _ = _dtq(argv, capsys)
    assert code == 0 and (out / "sim-mono.json").read_text() == "[]\n"
    (written,) = [p for p in out.iterdir() if p.name != "sim-mono.json"]
    assert written.name.startswith("sim-mono-") and written.name in stdout
    assert _dtq([*argv, "--force"], capsys)[0] == 0 and (out / "sim-mono.json").read_text() != "[]\n"
    named = tmp_path / "mine.json"
    assert _dtq([*argv, "--out", str(named)], capsys)[0] == 0 and named.is_file()


PROBE = {"busy_us": 300.0, "wake_us": 100.0, "wake_gap_us": 400.0, "gap_s": 0.01}


def _calibration(tmp_path: Path, probes: dict[str, list[dict[str, float]]] | None) -> Path:
    doc: dict[str, object] = {"parameters": {"name": "cal", "wakeup": 5e-5, "cores": 2}}
    if probes is not None:
        doc["host_probe"] = probes
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(doc))
    return path


def _run_sim(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0)


def test_dtq_sim_moves_a_twin_to_a_runs_host_speed(tmp_path: Path) -> None:
    """--host-scale RUN_DIR: the calibration's costs times the run's probe over the calibration's (the
    probes of the design's cluster), recorded in config.json; the same as SimParams.on_host."""
    workload = tmp_path / "tiny.yaml"
    workload.write_text(WORKLOAD)
    calibration = _calibration(tmp_path, {"mono": [PROBE], "micro": [{**PROBE, "busy_us": 100.0}]})
    real = tmp_path / "real-run"
    real.mkdir()
    slower = {**PROBE, "busy_us": 600.0, "wake_us": 150.0}
    (real / "config.json").write_text(json.dumps({"parameters": {"host_probe": slower}}))
    base = ["sim", "--design", "mono", "--workload", str(workload), "--calibration", str(calibration)]
    assert _run_sim([*base, "--runs-dir", str(tmp_path / "plain"), "--run-id", "sim-plain"]) == 0
    assert _run_sim([*base, "--runs-dir", str(tmp_path / "moved"), "--host-scale", str(real)]) == 0
    moved = load_config(tmp_path / "moved" / "sim-mono-tiny-3-r0")["parameters"]
    # cold: how waking after the gap moved against waking back to back, (400/150) / (400/100)
    assert moved["host_scale"] == {"cpu": 2.0, "wake": 1.5, "cold": (400 / 150) / (400 / 100), "gap": 0.01}
    params = load_params(calibration)
    expected = params.on_host(HostScale.between(slower, PROBE))
    assert moved["params"] == expected.to_mapping()
    plain = load_summary(tmp_path / "plain" / "sim-plain")["latency_ms"]["all"]["p50"]
    assert load_summary(tmp_path / "moved" / "sim-mono-tiny-3-r0")["latency_ms"]["all"]["p50"] > plain


def test_dtq_sim_host_scale_needs_a_calibration_with_probes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(WORKLOAD)
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(PROBE))
    base = ["sim", "--design", "mono", "--workload", str(workload), "--runs-dir", ""]
    assert _run_sim([*base, "--host-scale", str(probe)]) == 2
    assert "needs --calibration" in capsys.readouterr().err
    no_probes = _calibration(tmp_path, None)
    assert _run_sim([*base, "--calibration", str(no_probes), "--host-scale", str(probe)]) == 2
    assert "took no host probes" in capsys.readouterr().err
    with_probes = _calibration(tmp_path, {"mono": [PROBE]})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"busy_us": 0}))
    assert _run_sim([*base, "--calibration", str(with_probes), "--host-scale", str(bad)]) == 2
    assert "busy_us" in capsys.readouterr().err
