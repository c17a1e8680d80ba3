"""Each file is its own boundary, in both steps of staging (`steps.read`, `steps.check`):
whatever happens to this file ends as its outcome — ingested, rejected (its content; servio's
own failure is `internal_error`), refused (where it is) or deferred (I/O) — never as an
exception that stops the run and the other files. Only a failure to write the lake's staging
area (`StagingError`), a full disk and the process being stopped go through."""

from __future__ import annotations

import asyncio
import errno
import logging
import traceback
from collections.abc import Callable
from typing import Final

import polars as pl

from servio.raw import landing
from servio.raw.landing import FileRejected, LandedFile
from servio.schemas.raw import SOURCE_ROW
from servio.schemas.tables import DEFERRED, INTERNAL_ERROR, REJECTED
from servio.steps.context import RunContext
from servio.steps.errors import StagingError
from servio.steps.staging import StagedFile, staging_folder, write_stage
from servio.transforms import quarantine as quarantine_rows

# The stage step's log, whichever of its modules (boundary, read, check) writes.
log = logging.getLogger("servio.steps.stage")

# Never caught at a file's boundary: the process is being stopped.
STOPS: Final = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)
# A full disk is the machine's problem, not the file's: the run fails, nothing is published.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class Step:
    """What staging is doing, for the reason of an unexpected failure."""

    def __init__(self, name: str = "opening the file") -> None:
        self.name = name

    def __call__(self, name: str) -> None:
        self.name = name


def at_boundary(
    ctx: RunContext, landed: LandedFile, step: Step, work: Callable[[], StagedFile]
) -> StagedFile:
    """`work` for one file; whatever goes wrong with the file becomes its outcome."""
    try:
        return work()
    except FileRejected as rejected:
        return _rejected(ctx, landed, rejected)
    except StagingError:
        raise
    except STOPS:
        raise
    except landing.FileDeferred as deferred:
        code, detail = deferred.code, deferred.detail
    except MemoryError:
        code, detail = "out_of_memory", f"not enough memory while {step.name}"
    except OSError as exc:
        if exc.errno in _DISK_FULL:  # no file can be staged: the run stops (RELIABILITY.md 4)
            raise
        if exc.errno is None:  # a library's complaint about the content
            return _internal_error(ctx, landed, step, exc)
        deferral = landing.deferral_of(exc)
        code, detail = deferral.code, deferral.detail
    except BaseException as exc:  # a Rust panic (pyo3's PanicException) is one
        return _internal_error(ctx, landed, step, exc)
    log.warning("%s deferred: %s", landed.relative_path, code)
    ctx.lake.drop_staged(staging_folder(ctx, landed))
    return unstaged(landed, DEFERRED, code, detail)


def unstaged(landed: LandedFile, status: str, code: str, detail: str) -> StagedFile:
    """A file left for a later run (refused or deferred): no rows, a reason."""
    if status == DEFERRED:
        detail += "; the next run tries again"
    return StagedFile(landed, status, f"{code}: {detail}", 0, 0, 0, None, None)


def _rejected(ctx: RunContext, landed: LandedFile, rejected: FileRejected) -> StagedFile:
    log.warning("%s rejected: %s", landed.relative_path, rejected.code)
    # A late chunk may reject the file: nothing of it stays staged but this row.
    ctx.lake.drop_staged(staging_folder(ctx, landed))
    row = quarantine_rows.file_quarantine(
        source=landed.source,
        source_file=landed.relative_path,
        sha256=landed.sha256,
        code=rejected.code,
        detail=rejected.detail,
        run_id=ctx.run_id,
        quarantined_at=ctx.now(),
    )
    path = write_stage(ctx, landed, "quarantine", row.collect())
    return StagedFile(landed, REJECTED, f"{rejected.code}: {rejected.detail}", 0, 0, 0, None, path)


def _internal_error(
    ctx: RunContext, landed: LandedFile, step: Step, exc: BaseException
) -> StagedFile:
    """servio failed on this file: a rejection naming the step and the exception type only
    (its message may quote cell values); the traceback, without the message, at DEBUG."""
    log.error(
        "%s: internal error while %s (%s)", landed.relative_path, step.name, type(exc).__name__
    )
    log.debug(
        "traceback (message withheld: it may quote values)\n%s",
        "".join(traceback.format_tb(exc.__traceback__)),
    )
    detail = (
        f"servio failed while {step.name} ({type(exc).__name__}); "
        "the file is tried again by the next run"
    )
    return _rejected(ctx, landed, FileRejected(INTERNAL_ERROR, detail))


def record_range(raw: pl.DataFrame) -> str:
    """The record numbers of a chunk, for a step's name ("standardising records 1–1000")."""
    if raw.is_empty():
        return "(none)"
    numbers = raw.get_column(SOURCE_ROW)
    return f"{int(numbers.min())}–{int(numbers.max())}"  # type: ignore[arg-type]
