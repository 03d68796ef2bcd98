"""Reading the files a user writes (workloads, experiments, validations): YAML, TOML or JSON by suffix.
A file that does not parse is InvalidArgument naming the file, the line and the column, never the
parser's traceback."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from model.errors import InvalidArgument

SUFFIXES = (".yaml", ".yml", ".toml", ".json")


def read_document(path: Path | str, suffixes: tuple[str, ...] = SUFFIXES) -> Any:
    """The data in `path`, parsed by its suffix (one of `suffixes`). A missing file is
    FileNotFoundError; a suffix not in `suffixes`, bytes that are not UTF-8, or text that does not
    parse is InvalidArgument "<path>: line L, column C: <problem>"."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        kinds = " or ".join(filter(None, (", ".join(suffixes[:-1]), suffixes[-1])))
        raise InvalidArgument(f"{path}: expected a {kinds} file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = ": ".join(filter(None, (exc.context, exc.problem)))
        raise InvalidArgument(f"{path}: {where}{problem or 'not valid YAML'}") from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        raise InvalidArgument(f"{path}: not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
