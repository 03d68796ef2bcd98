"""What every `dtq` subcommand shares: the exit codes, the parser class (one-line usage errors, defaults
in the help), argument types that check their values, deprecated flag aliases, and progress lines.

Every part's `register(sub)` gets subparsers made by `DtqParser`, so its parsers are `DtqParser`s too
without importing this module (the simulator may not import realsys). Progress goes through the
logger named `PROGRESS_LOGGER` to stderr, never stdout (stdout may be data); `dtq ... --quiet`
silences it. A part that may not import realsys logs to that name itself.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, NoReturn, TextIO

from model.errors import InvalidArgument
from realsys.config import check_address


class Exit(IntEnum):
    """The exit codes of `dtq` (README "The command line")."""

    OK = 0
    FAILED = 1  # the command could not do its work: a cluster that would not start, a run that broke, a bug
    USAGE = 2  # bad arguments or input (flags, files, settings; INVALID_ARGUMENT from the cluster)
    RPC = 3  # a call to the cluster failed: the message starts with the gRPC status code's name
    JOB_FAILED = 4  # the job ended FAILED or CANCELLED (submit --wait, result); runs of a sweep failed
    NOT_DONE = 5  # --wait ran out before the job ended


# ---------------------------------------------------------------------------- parsers
class DtqFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default ("(default: X)") unless its help already speaks of one, or the
    default says nothing (None, False, "", []). Descriptions and epilogs are printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is argparse.SUPPRESS
            or default is None
            or default is False
            or (isinstance(default, str | list | tuple) and not default)
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else "%(default)s"
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


class _SubParsers(argparse._SubParsersAction):  # type: ignore[type-arg]
    """A subcommand's help line is also its description (shown atop `dtq CMD --help`)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if kwargs.get("help") and "description" not in kwargs:
            kwargs["description"] = kwargs["help"]
        parser: argparse.ArgumentParser = super().add_parser(name, **kwargs)
        return parser


class DtqParser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2) and defaults in the help; its subparsers are
    DtqParsers too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DtqFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _SubParsers)

    def error(self, message: str) -> NoReturn:
        self.exit(Exit.USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _Deprecated(argparse.Action):
    """An old spelling of a flag: works as `new` does, and says so on stderr."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        print(f"{parser.prog}: {option} is deprecated: use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def deprecated_alias(
    parser: argparse.ArgumentParser | Any, old: str, new: str, dest: str, flag: bool = False, **kwargs: Any
) -> None:
    """Accept `old` as `new` (same dest), hidden from the help; `flag`: it takes no value."""
    extra: dict[str, Any] = {"nargs": 0, "const": True} if flag else {}
    parser.add_argument(
        old, action=_Deprecated, new=new, dest=dest, help=argparse.SUPPRESS, **extra, **kwargs
    )


# ---------------------------------------------------------------------------- argument types
def _number(kind: Callable[[str], Any], what: str, check: Callable[[Any], bool]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not check(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_float = _number(float, "a number > 0", lambda v: v > 0)
non_negative_float = _number(float, "a number >= 0", lambda v: v >= 0)
positive_int = _number(int, "an integer >= 1", lambda v: v >= 1)
non_negative_int = _number(int, "an integer >= 0", lambda v: v >= 0)
int32 = _number(int, "an integer in -2147483648..2147483647", lambda v: -(2**31) <= v < 2**31)


def address(text: str) -> str:
    """host:port (IPv6 as [::1]:port), as nodes take them (realsys.config.check_address)."""
    try:
        return check_address(text, "")
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(exc.message.removeprefix(": ")) from None


def key_value(text: str) -> tuple[str, str]:
    """KEY=VALUE (a label); the key must not be empty."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def timestamp(text: str) -> float:
    """Seconds since the epoch, from an ISO 8601 date or date-time (UTC unless it names a zone:
    `2026-05-01`, `2026-05-01T12:30:00`, `...Z`, `...+02:00`) or a number of seconds since the epoch."""
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else _iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time (e.g. 2026-05-01T12:30:00Z; UTC by default) or epoch seconds, "
            f"got {text!r}"
        ) from None


def _iso(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# ---------------------------------------------------------------------------- progress
PROGRESS_LOGGER = "dtq.progress"
_progress = logging.getLogger(PROGRESS_LOGGER)


class _Lines(logging.Handler):
    """Writes each record as a line to `stream`, or to whatever sys.stderr is when it is written."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=self.stream or sys.stderr, flush=True)
        except Exception:  # a progress line must never break the command (logging's own rule)
            self.handleError(record)


class _Elapsed(logging.Formatter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.started = time.monotonic()

    def format(self, record: logging.LogRecord) -> str:
        return f"{self.prefix}[{time.monotonic() - self.started:6.1f}s] {record.getMessage()}"


def configure_progress(prog: str, quiet: bool, stream: TextIO | None = None) -> None:
    """Progress lines of this process go to `stream` (stderr) as "PROG: [  12.3s] message" (PROG:
    e.g. "dtq calibrate"), or nowhere with `quiet`."""
    for handler in list(_progress.handlers):
        _progress.removeHandler(handler)
    handler = _Lines(stream)
    handler.setFormatter(_Elapsed(f"{prog}: "))
    _progress.addHandler(handler)
    _progress.propagate = False  # not into a node's JSON logs, nor twice through the root logger
    _progress.setLevel(logging.WARNING if quiet else logging.INFO)


def progress(message: str) -> None:
    """One progress line on stderr (see configure_progress); silent under --quiet."""
    _progress.info(message)


def progress_enabled() -> bool:
    """Whether progress lines are shown (for tqdm bars: `disable=not progress_enabled()`)."""
    return _progress.isEnabledFor(logging.INFO) and bool(_progress.handlers)
