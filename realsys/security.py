"""Access control: TLS on every server and channel, and bearer tokens checked by a server interceptor.

Who may call what (when a node has DTQ_INTERNAL_TOKEN set, i.e. auth is on):

    service                                            accepted credentials
    dtq.v1.TaskQueue                                   a client token, or the internal token (mono forwards)
    dtq.v1.Workers                                     a worker token, or the internal token (mono reports
                                                       of stolen jobs go to the owner's Workers service)
    dtq.v1.JobStore/Queue/ResultStore/Coordinator/Peer the internal token only
    grpc.health.v1.Health, reflection                  anyone (probes and tools); still over TLS
    any other service                                  the internal token only

Identity: a worker token acts only as its own worker: every worker_id a Workers call names (its own
and each carried report's) must be the token's NAME or start with NAME- (DTQ_WORKER_TOKENS entries are
NAME:TOKEN; a bare token's NAME is derived from it, config.split_worker_token), else
PERMISSION_DENIED; so one worker-token holder cannot renew or finish another worker's attempts.
Node-to-node metadata (NODE_METADATA: `dtq-forwarded`) is accepted only with the internal token: a
client or worker sending it gets PERMISSION_DENIED.

Status codes: no token, a malformed `authorization` header or a token no list knows -> UNAUTHENTICATED;
a valid token of the wrong kind (a client token on the worker API), a worker id outside the worker
token's name, or node-only metadata from a client or worker -> PERMISSION_DENIED. Tokens travel
as metadata `authorization: Bearer <token>` (gRPC access-token call credentials), are compared with
hmac.compare_digest, and are never logged or echoed. Tokens require TLS (config.py refuses them without).

Internal hops authenticate with the shared internal token over server-authenticated TLS (not mTLS):
one secret per cluster, the same mechanism as clients and workers, and it works through the same
interceptor. Every channel verifies the server's certificate against DTQ_TLS_CA, so node
certificates must name the address a peer dials (IP 127.0.0.1 for local clusters, the Compose
service name in containers).

`write_cluster_pki` makes a throwaway CA and one certificate per node for `dtq cluster up --secure`.
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import grpc

from model.errors import InvalidArgument
from realsys.config import SecurityConfig, split_worker_token
from realsys.decoding import Malformed, serve_unary
from realsys.metrics import NodeMetrics, RpcRecorder

Kind = Literal["client", "worker", "internal"]
FORWARDED_KEY = "dtq-forwarded"  # Design B: a request one node forwarded to its owner (realsys/mono)
DELIVER_KEY = "dtq-deliver"  # Design B: an idempotent submit a primary home hands to its fallback home
NODE_METADATA = frozenset({FORWARDED_KEY, DELIVER_KEY})  # metadata only nodes (the internal token) may send

CLIENT_SERVICE = "dtq.v1.TaskQueue"
WORKER_SERVICE = "dtq.v1.Workers"
INTERNAL_SERVICES = (
    "dtq.v1.JobStore",
    "dtq.v1.Queue",
    "dtq.v1.ResultStore",
    "dtq.v1.Coordinator",
    "dtq.v1.Peer",
)
OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
# service -> the credential kinds it accepts; services not listed accept only the internal token
ACCEPTED: Mapping[str, tuple[Kind, ...]] = {
    CLIENT_SERVICE: ("client", "internal"),
    WORKER_SERVICE: ("worker", "internal"),
    **{service: ("internal",) for service in INTERNAL_SERVICES},
}
AUTH_KEY = "authorization"
_BEARER = "bearer "


# ---------------------------------------------------------------------------- files
def read_pem(path: Path, var: str) -> bytes:
    """A PEM file's bytes; InvalidArgument naming the variable when it cannot be read or is not PEM."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"{var}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise InvalidArgument(f"{var}: {path} is not a PEM file")
    return data


def server_credentials(security: SecurityConfig) -> grpc.ServerCredentials | None:
    """TLS server credentials from the configured files (read now: call at start-up); None: plaintext."""
    if security.tls_cert is None or security.tls_key is None:
        return None
    cert = read_pem(security.tls_cert, "DTQ_TLS_CERT")
    key = read_pem(security.tls_key, "DTQ_TLS_KEY")
    if security.tls_ca is not None:
        read_pem(security.tls_ca, "DTQ_TLS_CA")  # fail at start, not at the first outgoing call
    return grpc.ssl_server_credentials([(key, cert)])


# ---------------------------------------------------------------------------- channels
@dataclass(frozen=True, slots=True)
class ChannelSecurity:
    """How a channel connects: TLS verified against `root_certificates` (PEM bytes, or a file read when
    the channel opens), and a bearer token sent on every call. Both empty: plaintext, no token."""

    root_certificates: bytes | Path | None = None
    token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.token and self.root_certificates is None:
            raise ValueError(
                "a token needs TLS: give the cluster CA certificate (--ca or DTQ_TLS_CA; root_certificates=)"
            )

    def credentials(self) -> grpc.ChannelCredentials | None:
        if self.root_certificates is None:
            return None
        roots = self.root_certificates
        if isinstance(roots, Path):
            roots = read_pem(roots, "DTQ_TLS_CA")
        tls = grpc.ssl_channel_credentials(root_certificates=roots)
        if not self.token:
            return tls
        return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(self.token))


PLAINTEXT = ChannelSecurity()


def internal_channel_security(security: SecurityConfig) -> ChannelSecurity:
    """For node-to-node hops: the internal token."""
    return ChannelSecurity(security.tls_ca, security.internal_token)


def worker_channel_security(security: SecurityConfig) -> ChannelSecurity:
    """For a worker process calling a Workers service: its worker token (the first listed), else the
    internal token. Its worker ids must be security.worker_name or start with it and "-"."""
    if security.worker_tokens:
        token = split_worker_token(security.worker_tokens[0])[1]
    else:
        token = security.internal_token
    return ChannelSecurity(security.tls_ca, token)


def may_act_as(name: str, worker_id: str) -> bool:
    """Whether a worker token named `name` may use `worker_id`: the name itself, or name-<suffix>."""
    return worker_id == name or worker_id.startswith(name + "-")


def open_aio_channel(
    address: str, options: Sequence[tuple[str, Any]], security: ChannelSecurity | None = None
) -> grpc.aio.Channel:
    credentials = (security or PLAINTEXT).credentials()
    interceptors = _trace_interceptors()
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=list(options), interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=list(options), interceptors=interceptors)


def _trace_interceptors() -> Any:
    """The traceparent injector once a node in this process traces (realsys/tracing.py), else None.
    Looked up, not imported: the module (and OpenTelemetry) is loaded only where tracing is on."""
    tracing = sys.modules.get("realsys.tracing")
    return None if tracing is None else tracing.channel_interceptors()


def open_channel(
    address: str, options: Sequence[tuple[str, Any]] = (), security: ChannelSecurity | None = None
) -> grpc.Channel:
    """A blocking channel (health probes)."""
    credentials = (security or PLAINTEXT).credentials()
    if credentials is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, credentials, options=list(options))


# ---------------------------------------------------------------------------- the interceptor
if TYPE_CHECKING:  # generic only in grpc-stubs
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor
    Handler = Any


class AuthInterceptor(_Interceptor):
    """Checks the bearer token of every call against the service's accepted kinds (module docstring)."""

    def __init__(self, security: SecurityConfig, metrics: NodeMetrics | None = None) -> None:
        self._metrics = metrics  # refused calls are timed and counted, by their code, like served ones
        # (token, kind, worker name: "" but for worker tokens)
        tokens: list[tuple[bytes, Kind, str]] = [(t.encode(), "client", "") for t in security.client_tokens]
        for entry in security.worker_tokens:
            name, token = split_worker_token(entry)
            tokens.append((token.encode(), "worker", name))
        tokens.append((security.internal_token.encode(), "internal", ""))
        self._tokens = tuple(tokens)
        # (method, code, message) -> a handler that fails the call, made once
        self._rejections: dict[tuple[str, grpc.StatusCode, str], Handler] = {}
        # (method, worker name) -> the handler that checks the request's worker_id first, made once
        self._bound: dict[tuple[str, str], Handler] = {}

    def identify(self, token: str) -> tuple[Kind, str] | None:
        """The kind (and worker name) of a presented token, comparing in constant time against every
        known token."""
        presented = token.encode()
        found: tuple[Kind, str] | None = None
        for known, kind, name in self._tokens:
            if hmac.compare_digest(presented, known):
                found = (kind, name)
        return found

    def kind_of(self, token: str) -> Kind | None:
        identity = self.identify(token)
        return None if identity is None else identity[0]

    def check(
        self, service: str, metadata: Sequence[tuple[str, str | bytes]] | None
    ) -> tuple[grpc.StatusCode, str] | None:
        """None when the call may proceed, else the status code and message to fail it with."""
        verdict, _ = self._verdict(service, metadata)
        return verdict

    def _verdict(
        self, service: str, metadata: Sequence[tuple[str, str | bytes]] | None
    ) -> tuple[tuple[grpc.StatusCode, str] | None, str]:
        """(check's answer, the worker name of a worker token that may proceed, else "")."""
        if service in OPEN_SERVICES:
            return None, ""
        accepted = ACCEPTED.get(service, ("internal",))
        needs = " or ".join(f"an {k} token" if k == "internal" else f"a {k} token" for k in accepted)
        values = [v for k, v in metadata or () if k == AUTH_KEY]
        if not values:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                f"missing credentials: {service} needs metadata 'authorization: Bearer <token>' ({needs})",
            ), ""
        value = values[0]
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if len(values) > 1 or not text.lower().startswith(_BEARER):
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                "authorization metadata must be one 'Bearer <token>'",
            ), ""
        identity = self.identify(text[len(_BEARER) :].strip())
        if identity is None:
            return (grpc.StatusCode.UNAUTHENTICATED, f"invalid token for {service}"), ""
        kind, name = identity
        if kind not in accepted:
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"a {kind} token may not call {service}: it needs {needs}",
            ), ""
        if kind != "internal":
            forged = sorted({k for k, _ in metadata or () if k in NODE_METADATA})
            if forged:
                return (
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"metadata {forged[0]!r} is for calls between nodes (the internal token), "
                    f"not from a {kind} token",
                ), ""
        return None, name

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method = handler_call_details.method
        service = method.split("/")[1] if method.count("/") == 2 else method
        verdict, worker_name = self._verdict(service, handler_call_details.invocation_metadata)
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if verdict is None:
            if not worker_name or service != WORKER_SERVICE:
                return handler
            bound = self._bound.get((method, worker_name))
            if bound is None:
                recorder = self._metrics.recorder(method) if self._metrics is not None else None
                bound = self._bound[(method, worker_name)] = _bound_to(handler, worker_name, recorder)
            return bound
        code, message = verdict
        key = (method, code, message)
        rejection = self._rejections.get(key)
        if rejection is None:
            recorder = self._metrics.recorder(method) if self._metrics is not None else None
            rejection = self._rejections[key] = _rejecting(handler, code, message, recorder)
        return rejection


def _rejecting(
    handler: Handler, code: grpc.StatusCode, message: str, recorder: RpcRecorder | None = None
) -> Handler:
    """A handler of the same shape as `handler` that fails with (code, message) before reading a request
    (no deserializer: nothing of an unauthenticated request is parsed); a unary one is recorded."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    unary = serve_unary(refuse, recorder) if recorder is not None else refuse

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming)
    return grpc.unary_unary_rpc_method_handler(unary)


def foreign_worker_id(request: Any, name: str) -> str | None:
    """The first worker id in `request` that a worker token named `name` may not use, else None: the
    request's own `worker_id` and that of every report it carries (FetchWork's `reports`, and
    ReportResults, whose batch names its workers only in its reports)."""
    worker_id = getattr(request, "worker_id", None)
    if worker_id is not None and not may_act_as(name, worker_id):
        return str(worker_id)
    for report in getattr(request, "reports", ()):
        if not may_act_as(name, report.worker_id):
            return str(report.worker_id)
    return None


def _bound_to(handler: Handler, name: str, recorder: RpcRecorder | None) -> Handler:
    """`handler` (unary, its request naming worker ids) refusing with PERMISSION_DENIED a worker id
    that a worker token named `name` may not use (foreign_worker_id); a refusal is recorded as auth's
    are."""
    if handler.request_streaming or handler.response_streaming:
        return handler  # the Workers API is unary; nothing else reaches here
    serve: Any = handler.unary_unary

    async def check(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        worker_id = None if isinstance(request, Malformed) else foreign_worker_id(request, name)
        if worker_id is None:
            return await serve(request, context)
        start = time.perf_counter()
        try:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this worker token acts as worker {name!r} (or {name}-<suffix>), not {worker_id[:128]!r}",
            )
        finally:
            if recorder is not None:
                recorder.record(grpc.StatusCode.PERMISSION_DENIED, time.perf_counter() - start)

    return grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def auth_interceptor(security: SecurityConfig, metrics: NodeMetrics | None = None) -> AuthInterceptor | None:
    """The interceptor when auth is on (DTQ_INTERNAL_TOKEN set), else None."""
    return AuthInterceptor(security, metrics) if security.auth else None


# ---------------------------------------------------------------------------- throwaway PKI
def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class NodeCertificate:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class ClusterPki:
    ca: Path
    nodes: dict[str, NodeCertificate]


def write_cluster_pki(
    directory: Path, node_names: Sequence[str], hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1")
) -> ClusterPki:
    """A new CA (its key stays in `directory`) and a certificate per node whose SANs are the node's
    name (its Compose service name) and `hosts`. Valid for 30 days; keys are mode 0600."""
    # cryptography's x509 (~0.1 s to import) only for `cluster up --secure`: off a node's start-up path
    from cryptography import x509  # (see above)
    from cryptography.hazmat.primitives import hashes, serialization  # (see above)
    from cryptography.hazmat.primitives.asymmetric import ec  # (see above)
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # (see above)

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=30)

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dtq throwaway cluster CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    write_key(directory / "ca.key", ca_key)

    nodes: dict[str, NodeCertificate] = {}
    for name in node_names:
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(name)]
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        paths = NodeCertificate(directory / f"{name}.pem", directory / f"{name}.key")
        paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(paths.key, key)
        nodes[name] = paths
    return ClusterPki(ca_path, nodes)


def write_secret(path: Path, text: str) -> None:
    """A file only its owner can read (tokens)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
