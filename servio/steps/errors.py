"""Why a run stops (every other failure is one file's outcome, or a warning after publish)."""

from __future__ import annotations


class StagingError(OSError):
    """Writing to the lake's staging area failed (a full disk): the run stops, the tables
    stay as they were (RELIABILITY.md row 4). Not a problem of the file being staged."""

    @classmethod
    def because(cls, cause: BaseException, message: str) -> StagingError:
        """The error for `cause`, keeping its errno (ENOSPC stays ENOSPC) and this message."""
        error = cls(message)
        error.errno = cause.errno if isinstance(cause, OSError) else None
        return error


class ReconciliationError(RuntimeError):
    """Counts do not add up: a row would have been lost or doubled; nothing is published."""
