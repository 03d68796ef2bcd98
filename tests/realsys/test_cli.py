"""The `dtq` registry (realsys/cli.py): every part's commands come from its entry points, and the
product works without the optional parts' dependencies (the node image's install)."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from realsys.cli import build_parser, command_entry_points, main

# what the base install (the node image) does not have: the sim and lab extras' packages
OPTIONAL = ("simpy", "scipy", "matplotlib", "pandas", "tqdm", "seaborn", "celery", "redis")
PRODUCT = {
    "serve",
    "cluster",
    "submit",
    "status",
    "result",
    "cancel",
    "list",
    "load",
    "trace",
    "deploy",
    "demo",
}


def _commands(register_value: str) -> set[str]:
    """The commands one part's register() adds (aliases included)."""
    module, _, name = register_value.partition(":")
    register = getattr(__import__(module, fromlist=[name]), name)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    register(sub)
    return set(sub.choices)


def test_each_part_registers_exactly_its_entry_points() -> None:
    by_value: dict[str, set[str]] = defaultdict(set)
    for ep in command_entry_points():
        by_value[ep.value].add(ep.name)
    assert set(by_value) == {"realsys.cli:register", "sim.cli:register", "lab.cli:register"}
    for value, names in by_value.items():
        assert _commands(value) == names, value
    assert by_value["realsys.cli:register"] == PRODUCT
    assert by_value["sim.cli:register"] == {"sim", "plan"}


def test_a_command_loads_only_its_part() -> None:
    parser, unavailable = build_parser("status")
    assert not unavailable
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(choices) == PRODUCT


def test_every_command_has_a_handler() -> None:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        leaves = [p for a in nested for p in a.choices.values()] or [command]
        own = command.get_default("handler")
        assert all((leaf.get_default("handler") or own) is not None for leaf in leaves), name


def _parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[argparse.ArgumentParser, set[str]]]:
    """Every parser of the tree once, with the names of its subcommands that have a help line."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions}
            for name, child in action.choices.items():
                if child.prog.endswith(f" {name}"):  # not an alias
                    yield child, helped
                    yield from _parsers(child)


def test_every_command_and_flag_has_a_help_line() -> None:
    parser, _ = build_parser()
    missing = []
    for child, helped in _parsers(parser):
        if child.prog.rsplit(" ", 1)[1] not in helped:
            missing.append(child.prog)
        missing += [
            f"{child.prog} {a.dest}"
            for a in child._actions
            if a.help is None and not isinstance(a, argparse._SubParsersAction)  # those: their choices'
        ]
    assert missing == []


def test_an_error_is_one_line_naming_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["status", "--dir", "/nonexistent/dtq-cluster", "n1-1-1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "dtq status: no cluster at /nonexistent/dtq-cluster (missing cluster.json)\n"


def test_an_unexpected_error_is_one_line_without_its_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise KeyError("boom")

    monkeypatch.setattr("realsys.cli._cluster_status", broken)
    monkeypatch.delenv("DTQ_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["cluster", "status", "--dir", "x"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "dtq cluster status: internal error: KeyError: 'boom' (a bug: DTQ_TRACEBACK=1 prints the traceback "
        "for a report)"
    ]
    monkeypatch.setenv("DTQ_TRACEBACK", "1")
    with pytest.raises(SystemExit):
        main(["cluster", "status", "--dir", "x"])
    assert "Traceback" in capsys.readouterr().err


BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = set(sys.argv[1].split(","))
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Blocker())
    sys.argv = ["dtq", *sys.argv[2:]]
    import realsys, realsys.server, realsys.cluster, realsys.client, realsys.loadgen, model
    from realsys.cli import main
    main()
    """
)


def _dtq_without_extras(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(OPTIONAL), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_product_works_without_the_optional_dependencies() -> None:
    for argv in (["serve", "--help"], ["cluster", "--help"], ["cluster", "up", "--help"], ["--help"]):
        done = _dtq_without_extras(*argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert "usage: dtq" in done.stdout
    helped = _dtq_without_extras("--help").stdout
    assert "serve" in helped and "submit" in helped
    for left_out in ("sim", "experiment", "calibrate", "report"):
        assert f"    {left_out} " not in helped, left_out


@pytest.mark.parametrize(("command", "extra"), [("sim", "sim"), ("experiment", "lab"), ("paper", "lab")])
def test_a_missing_part_says_which_extra(command: str, extra: str) -> None:
    done = _dtq_without_extras(command, "--help")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'dtq[{extra}]'" in lines[0], done.stderr
    assert lines[0].startswith(f"dtq {command}: needs the '{extra}' extra")


def test_sigterm_ends_a_command_as_ctrl_c_does(tmp_path: Path) -> None:
    """SIGTERM runs the command's `finally`s (Python's default ended the process at once: a killed
    `dtq calibrate` left its probe cluster running), then one line and exit 143. The command here
    is a `try/finally` around a sleep, registered as `dtq` commands are, run in its own process."""
    marker = tmp_path / "cleaned"
    script = textwrap.dedent(
        f"""
        import sys, time
        from realsys import cli

        def handler(args):
            try:
                print("ready", flush=True)
                time.sleep(30)
            finally:
                open({str(marker)!r}, "w").close()
            return 0

        def register(sub):
            sub.add_parser("sleepy").set_defaults(handler=handler)

        real = cli.build_parser
        def build_parser(command=None):
            parser, unavailable = real(command)
            sub = next(a for a in parser._actions if a.dest == "command")
            register(sub)
            sub.choices["sleepy"].set_defaults(dtq_prog="dtq sleepy")
            return parser, unavailable
        cli.build_parser = build_parser
        cli.main(["sleepy"])
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip() == "dtq sleepy: terminated (SIGTERM)" and marker.exists()
