"""The event loop every dtq process runs on: uvloop where it is installed (not on Windows), else
asyncio's own. Nodes, the load generator and the lab's clients all take it from here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's default loop) where uvloop is not installed."""
    try:
        import uvloop  # optional: not on Windows (pyproject's platform marker)
    except ImportError:
        return None
    return uvloop.new_event_loop
