"""Container health probe: exit 0 only when this container's dtq process answers gRPC health SERVING.

It asks 127.0.0.1 on the port of DTQ_LISTEN (the overall health, service ""), so it checks the process
in its own container whatever address that process binds. The image's HEALTHCHECK runs it.

With TLS on (DTQ_TLS_CERT and DTQ_TLS_CA set, as for the node) it dials TLS and verifies the node's
certificate with DTQ_TLS_CA, so the certificate must name 127.0.0.1 (realsys/security.py makes such
certificates). Health needs no token.
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
    address = f"127.0.0.1:{port}"
    ca = os.environ.get("DTQ_TLS_CA", "")
    try:
        if os.environ.get("DTQ_TLS_CERT") and ca:
            with open(ca, "rb") as pem:
                credentials = grpc.ssl_channel_credentials(root_certificates=pem.read())
            channel = grpc.secure_channel(address, credentials)
        else:
            channel = grpc.insecure_channel(address)
    except OSError as exc:
        print(f"unhealthy: cannot read DTQ_TLS_CA {ca}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        with channel:
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
