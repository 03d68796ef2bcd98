"""The worker: job types (handlers.py), the slot runtime (runtime.py) and its gRPC backend."""

from realsys.worker.grpc_backend import GrpcWorkerBackend
from realsys.worker.handlers import (
    HandlerRegistry,
    JobCancelled,
    JobContext,
    JobFailure,
    job_type,
    load_job_modules,
    registry,
)
from realsys.worker.runtime import WorkerBackend, WorkerRuntime

__all__ = [
    "GrpcWorkerBackend",
    "HandlerRegistry",
    "JobCancelled",
    "JobContext",
    "JobFailure",
    "WorkerBackend",
    "WorkerRuntime",
    "job_type",
    "load_job_modules",
    "registry",
]
