"""The error tree: one root, branches named after who handles them.

Every exception here takes a single message argument so that it survives pickling across the
process pool unchanged.
"""

from __future__ import annotations


class PipelinedError(Exception):
    """Root of every error pipelined raises on purpose."""


class RetryableError(PipelinedError):
    """A transient failure: the message goes back to the queue after a backoff delay."""

    retry_after_s: float = 0.0
    """When known, the earliest a retry can succeed; the backoff is never shorter."""


class ClaimBusyError(RetryableError):
    """Another consumer holds a live claim on the same object version."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[ClaimBusyError], tuple[str, float]]:
        return (type(self), (str(self), self.retry_after_s))


class ThrottledError(RetryableError):
    """The cloud asked us to slow down (SlowDown, ThrottlingException and friends)."""


class LeaseLostError(RetryableError):
    """The message's lease could not be extended; another consumer may own it now."""


class WorkerDiedError(RetryableError):
    """A pool worker died under a job (killed from outside, or a crash in native code)."""


class PermanentError(PipelinedError):
    """Bad input: recorded as failed, notified and deleted; retrying cannot help."""


class UnsupportedContentError(PermanentError):
    """The bytes are not a type pipelined processes."""


class CorruptFileError(PermanentError):
    """The bytes claim a supported type but cannot be decoded."""


class LimitExceededError(PermanentError):
    """The input crosses a configured limit; the message names the limit and the value."""


class ConfigError(PipelinedError):
    """A setting is missing or invalid; start-up stops with exit code 2."""
