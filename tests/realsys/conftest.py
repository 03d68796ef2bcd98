"""Payloads and core configs shared by the real-system tests."""

from __future__ import annotations

import json
from typing import Any

from model.config import CoreConfig

# heartbeats, backoffs and payload caps short enough that failure paths finish in about a second
FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "default_initial_backoff": 0.05,
    "default_max_backoff": 0.2,
    "max_payload_bytes": 4096,
}


def fast_core(**overrides: Any) -> CoreConfig:
    """A CoreConfig with FAST's short timings, and `overrides` on top."""
    return CoreConfig(**{**FAST, **overrides})


def sleep_payload(seconds: float) -> bytes:
    """The payload of the built-in `sleep` job type."""
    return json.dumps({"seconds": seconds}).encode()
