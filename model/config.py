"""The core's tunables: one frozen dataclass, validated when built. Times are in seconds."""

from __future__ import annotations

from dataclasses import dataclass

from model.errors import InvalidArgument

# The gRPC message limit on every server and channel (realsys.config.grpc_options). Payloads are capped
# at CoreConfig.max_payload_bytes (1 MiB by default); a message also carries the spec, labels and, for
# list pages, many jobs, so the transport limit is well above it. Design A's LeaseJobs keeps its reply
# under half of it (model/job_service.py), in the simulator too.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CoreConfig:
    lease_duration: float = 10.0  # a lease lives this long past the latest heartbeat
    heartbeat_interval: float = 2.0  # what workers are told to use
    # a worker silent for this long is declared lost; shorter than the lease, so its jobs are
    # released before their leases would lapse on their own
    worker_ttl: float = 6.0
    default_execution_timeout: float = 300.0
    max_execution_timeout: float = 24 * 3600.0
    default_max_attempts: int = 3
    max_attempts_cap: int = 100
    default_initial_backoff: float = 0.5
    default_max_backoff: float = 30.0
    default_backoff_multiplier: float = 2.0
    backoff_jitter: float = 0.0  # fraction of the backoff drawn uniformly at random (needs an rng)
    max_pending: int = 1_000_000  # SubmitJob gets RESOURCE_EXHAUSTED beyond this many pending jobs
    max_payload_bytes: int = 1 << 20
    max_labels: int = 64
    max_label_chars: int = 256
    default_page_size: int = 50
    max_page_size: int = 1000
    reservation_hold: float = 5.0  # queue reservations not acknowledged in time return to the queue
    # retention of terminal jobs and their results (Celery #7801): dropped result_ttl seconds after
    # they ended (0 = no time limit), and the oldest first beyond max_retained_jobs per owner
    result_ttl: float = 24 * 3600.0
    max_retained_jobs: int = 1_000_000

    def __post_init__(self) -> None:
        positive = {
            "lease_duration": self.lease_duration,
            "heartbeat_interval": self.heartbeat_interval,
            "worker_ttl": self.worker_ttl,
            "default_execution_timeout": self.default_execution_timeout,
            "max_execution_timeout": self.max_execution_timeout,
            "reservation_hold": self.reservation_hold,
        }
        for name, value in positive.items():
            if not value > 0:
                raise InvalidArgument(f"{name} must be > 0, got {value}")
        if self.heartbeat_interval >= self.lease_duration:
            raise InvalidArgument("heartbeat_interval must be shorter than lease_duration")
        if not 1 <= self.default_max_attempts <= self.max_attempts_cap:
            raise InvalidArgument("default_max_attempts must be in [1, max_attempts_cap]")
        if self.default_initial_backoff < 0 or self.default_max_backoff < self.default_initial_backoff:
            raise InvalidArgument("need 0 <= default_initial_backoff <= default_max_backoff")
        if self.default_backoff_multiplier < 1:
            raise InvalidArgument("default_backoff_multiplier must be >= 1")
        if not 0 <= self.backoff_jitter <= 1:
            raise InvalidArgument("backoff_jitter must be in [0, 1]")
        if self.max_pending < 1 or self.max_payload_bytes < 0:
            raise InvalidArgument("max_pending must be >= 1 and max_payload_bytes >= 0")
        if not self.result_ttl >= 0 or self.max_retained_jobs < 1:
            raise InvalidArgument("result_ttl must be >= 0 (0 = no time limit) and max_retained_jobs >= 1")
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise InvalidArgument("need 1 <= default_page_size <= max_page_size")
