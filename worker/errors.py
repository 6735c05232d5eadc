"""Exceptions of the card lookup worker.

    WorkerError
    ├── LookupFailed            an API call gave up; carries the kind and attempts
    │   (kind: rate_limited, unavailable, timeout, rejected, deadline_exceeded)
    └── PublishFailed           a reply or dead letter could not be made durable

httpx and aiokafka exceptions are translated into these at the client and
publisher boundaries, with the original chained as `__cause__`.
"""

from __future__ import annotations

from schemas.replies import ErrorKind


class WorkerError(Exception):
    """Root of the worker's own exceptions."""


class LookupFailed(WorkerError):
    """Raised when a CareCloud call fails for good; every card it carried gets `error`."""

    def __init__(self, kind: ErrorKind, message: str, attempts: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        return self.kind in (ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE, ErrorKind.TIMEOUT)


class PublishFailed(WorkerError):
    """Raised when a message could not be published; `permanent` means retrying will not help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent
