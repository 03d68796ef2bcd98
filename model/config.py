"""The core's tunables: one frozen dataclass, validated when built. Times are in seconds, sizes in bytes."""

from __future__ import annotations

from dataclasses import dataclass

from model.errors import InvalidArgument
from model.policies import PolicySettings, build, parse_weights

# Bytes one job adds to a reply besides its strings (ids, numbers, times, protobuf tags and lengths),
# and each label besides its key and value: generous upper bounds (tests/realsys/test_convert.py)
JOB_FRAMING_BYTES = 512
LABEL_FRAMING_BYTES = 16
MAX_REQUEST_ID_CHARS = 128
MAX_WORKER_ID_CHARS = 128
MAX_ERROR_REASON_CHARS = 64
MAX_ESTIMATE_WINDOW = 1_000_000  # service times an owner keeps for status estimates, at most
UTF8_MAX = 4  # bytes per character, at most


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
    # ... and beyond this many payload bytes of unfinished jobs (per owner: what dispatch needs in RAM)
    max_pending_bytes: int = 256 << 20
    max_payload_bytes: int = 1 << 20
    max_result_bytes: int = 2 << 20  # a larger output fails its job for good (RESULT_TOO_LARGE)
    max_error_chars: int = 4096  # a worker's error message is cut to this length
    # replies that carry payloads or many jobs (FetchWork, StealWork, LeaseJobs, ListJobs pages) end
    # before this many bytes; what does not fit stays queued or goes to the next page
    max_reply_bytes: int = 4 << 20
    # result bytes of finished jobs kept per owner: beyond it the oldest finished jobs go first, as
    # beyond max_retained_jobs; results over max_inline_result_bytes stay in the store, not in RAM
    max_retained_bytes: int = 256 << 20
    max_inline_result_bytes: int = 64 << 10
    max_worker_slots: int = 1024  # the most slots one worker's heartbeat may claim
    max_labels: int = 64
    max_label_chars: int = 256
    default_page_size: int = 50
    max_page_size: int = 1000
    reservation_hold: float = 5.0  # queue reservations not acknowledged in time return to the queue
    # retention of terminal jobs and their results (Celery #7801): dropped result_ttl seconds after
    # they ended (0 = no time limit), and the oldest first beyond max_retained_jobs per owner
    result_ttl: float = 24 * 3600.0
    max_retained_jobs: int = 1_000_000
    # the scheduling policy (model/policies.py: fifo, fair, concurrency, ratelimit), per owner; its key
    # is a job's value of the label policy_key; fair weighs keys by policy_weights "k=w,..." (else 1),
    # concurrency allows policy_limit running jobs per key, ratelimit policy_rate jobs/s per key with
    # bursts of policy_burst
    policy: str = "fifo"
    policy_key: str = "tenant"
    policy_weights: str = ""
    policy_limit: int = 1
    policy_rate: float = 1.0
    policy_burst: float = 1.0
    # GetJobStatus of a PENDING or RUNNING job adds an estimated start and end time (model/eta.py),
    # from the mean service time of the owner's last this-many attempts; 0: off
    estimate_window: int = 0

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
        sizes = {
            "max_pending_bytes": self.max_pending_bytes,
            "max_result_bytes": self.max_result_bytes,
            "max_error_chars": self.max_error_chars,
            "max_retained_bytes": self.max_retained_bytes,
            "max_inline_result_bytes": self.max_inline_result_bytes,
        }
        for name, value in sizes.items():
            if value < 0:
                raise InvalidArgument(f"{name} must be >= 0, got {value}")
        if self.max_pending_bytes < self.max_payload_bytes:
            raise InvalidArgument(
                f"max_pending_bytes ({self.max_pending_bytes}) must be >= max_payload_bytes "
                f"({self.max_payload_bytes}): a payload within the limit could never be accepted"
            )
        build(self.policy_settings)  # a policy that cannot be built is refused here, by name
        if not 0 <= self.estimate_window <= MAX_ESTIMATE_WINDOW:
            raise InvalidArgument(
                f"estimate_window must be in [0, {MAX_ESTIMATE_WINDOW}] (0: off), got {self.estimate_window}"
            )
        if self.max_worker_slots < 1:
            raise InvalidArgument(f"max_worker_slots must be >= 1, got {self.max_worker_slots}")
        # one job must always fit a reply, or a page or fetch could never make progress
        largest = max(self.max_payload_bytes, self.max_result_bytes) + self.max_status_bytes
        if self.max_reply_bytes < largest:
            raise InvalidArgument(
                f"max_reply_bytes ({self.max_reply_bytes}) must hold one job: max(max_payload_bytes, "
                f"max_result_bytes) plus its status with labels and error at their limits ({largest})"
            )

    @property
    def policy_settings(self) -> PolicySettings:
        return PolicySettings(
            self.policy,
            self.policy_key,
            parse_weights(self.policy_weights),
            self.policy_limit,
            self.policy_rate,
            self.policy_burst,
        )

    @property
    def max_status_bytes(self) -> int:
        """The most bytes one job's status view (no payload, no output) can take in a reply."""
        strings = (
            128  # job_type: ASCII (model.job)
            + self.max_labels * (2 * self.max_label_chars * UTF8_MAX + LABEL_FRAMING_BYTES)
            + (MAX_REQUEST_ID_CHARS + MAX_WORKER_ID_CHARS + self.max_error_chars) * UTF8_MAX
            + MAX_ERROR_REASON_CHARS * UTF8_MAX
        )
        return JOB_FRAMING_BYTES + strings
