"""Structured logs: one JSON object per line on stderr with `ts`, `level`, `node`, `role`, `logger`, `msg`,
plus any `extra={...}` fields and `exc` (the traceback) for exceptions.

    log = get_logger(__name__)
    log.info("lease expired", extra={"job_id": job_id, "attempt": attempt})

`node` and `role` come from a context variable set by `bind_node` (start_role calls it, so every task a
role starts inherits them; tests can run several nodes in one process), else from `configure_logging`.

A reply grpc could not send (over the message limit, or its caller gone) is one WARNING line, not
grpc's ERROR with a traceback of its own internals: the caller already has its status code.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from realsys.config import NodeConfig

_node: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("dtq_node", default=None)
_process_node = ["", ""]  # node and role for logs outside any bound context

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def bind_node(node: str, role: str) -> None:
    """Tags the logs of the current context (and of the tasks it creates) with this node and role."""
    _node.set((node, role))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        node, role = _node.get() or _process_node
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "node": node,
            "role": role,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ReplyNotSent(logging.Filter):
    """Rewrites grpc's "ExecuteBatchError raised in core by servicer method [...]" (an ERROR with a
    traceback) into one WARNING line naming the method."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if type(error).__name__ == "ExecuteBatchError":
            method = record.getMessage().rpartition("[")[2].rstrip("]")
            record.msg = "reply not sent (larger than the message limit, or the caller left)"
            record.args = ()
            record.method = method
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


GRPC_SERVER_LOGGER = "grpc._cython.cygrpc"


def configure_logging(config: NodeConfig | None = None, stream: IO[str] | None = None) -> None:
    """Sends every log record to `stream` (stderr) as JSON, at config.log_level. Replaces root handlers."""
    if config is not None:
        _process_node[:] = [config.name, config.role]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.log_level if config is not None else logging.INFO)
    grpc_server = logging.getLogger(GRPC_SERVER_LOGGER)
    if not any(isinstance(f, ReplyNotSent) for f in grpc_server.filters):
        grpc_server.addFilter(ReplyNotSent())
