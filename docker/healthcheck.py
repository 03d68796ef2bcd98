"""Container health probe: exit 0 only when this container's dtq process answers gRPC health SERVING.

It asks 127.0.0.1 on the port of DTQ_LISTEN (the overall health, service ""), so it checks the process
in its own container whatever address that process binds. The image's HEALTHCHECK runs it.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_S = 3.0


def main() -> int:
    listen = os.environ.get("DTQ_LISTEN", "0.0.0.0:50051")
    port = listen.rsplit(":", 1)[-1]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
    except grpc.RpcError as exc:
        code = exc.code().name if isinstance(exc, grpc.Call) else type(exc).__name__
        print(f"unhealthy: 127.0.0.1:{port} {code}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"127.0.0.1:{port} {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
