"""The lab's `dtq` subcommands: experiment, validate, bench, soak, faults, calibrate, diagnose and
report (alias paper). `register` adds them to the `dtq` entry point (realsys/cli.py's registry);
each subject's module builds its own parser and handler."""

from __future__ import annotations

from typing import Any

from lab import diagnose, soak
from lab.bench import bench
from lab.calibration import calibrate
from lab.experiment import cli as experiment
from lab.faults import cli as faults
from lab.report import build as report
from lab.validation import cli as validation


def register(sub: Any) -> None:
    for add_parser in (
        experiment.add_parser,
        validation.add_parser,
        bench.add_parser,
        soak.add_parser,
        faults.add_parser,
        calibrate.add_parser,
        diagnose.add_parser,
        report.add_parser,
    ):
        add_parser(sub)
