"""The committed protobuf/gRPC code equals what proto/generate.py produces from the .proto sources."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
COMMITTED = PROTO_ROOT / "dtq" / "v1"
HINT = "the generated protobuf code is stale: run `python proto/generate.py` and commit the result"


def _load_generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dtq_proto_generate", PROTO_ROOT / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    generate = _load_generate()
    out = tmp_path_factory.mktemp("generated")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(PROTO_ROOT)  # as `python proto/generate.py` does: protoc records paths relative to -I
        generate.generate(out)
    return out / "dtq" / "v1"


def _generated_files(folder: Path, suffixes: tuple[str, ...]) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(suffixes)}


def test_sources_exist() -> None:
    sources = sorted(p.name for p in COMMITTED.glob("*.proto"))
    assert sources == ["client.proto", "internal.proto", "job.proto", "worker.proto"]


def test_generated_set_equals_committed_set(generated: Path) -> None:
    suffixes = _load_generate().GENERATED_SUFFIXES
    assert set(suffixes) == {"_pb2.py", "_pb2.pyi", "_pb2_grpc.py"}
    produced = _generated_files(generated, suffixes)
    committed = _generated_files(COMMITTED, suffixes)
    # every .proto yields one file of each kind
    stems = {p.stem for p in COMMITTED.glob("*.proto")}
    assert produced == {stem + suffix for stem in stems for suffix in suffixes}
    assert committed == produced, (
        f"{HINT} (missing: {sorted(produced - committed)}, extra: {sorted(committed - produced)})"
    )


def test_generated_code_is_byte_identical(generated: Path) -> None:
    suffixes = _load_generate().GENERATED_SUFFIXES
    stale = [
        name
        for name in sorted(_generated_files(generated, suffixes))
        if not (COMMITTED / name).is_file()
        or (COMMITTED / name).read_bytes() != (generated / name).read_bytes()
    ]
    assert not stale, f"{HINT}; differing files: {stale}"
