"""Regenerates the committed protobuf and gRPC Python code from proto/dtq/v1/*.proto.

Usage: python proto/generate.py [--out DIR]   (default: proto/, beside the sources)
tests/proto/test_generated_is_fresh.py runs this into a temporary folder and fails on any diff.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_sources() -> list[Path]:
    return sorted((PROTO_ROOT / "dtq" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_sources()),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    args = parser.parse_args()
    import os

    os.chdir(PROTO_ROOT)  # protoc records paths relative to -I; keep them stable
    generate(args.out.resolve())
    print(f"generated {len(proto_sources())} proto files into {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
