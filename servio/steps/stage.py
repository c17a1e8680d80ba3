"""Step 2, stage one landed file: read it in chunks, standardise, check every rule, and park
its curated rows and quarantine rows in the run's staging as Parquet parts (paths, never
frames, go on to the publish step).

`stage_file` is the file's boundary: whatever happens to this file ends as its outcome —
ingested, rejected (its content; servio's own failure is `internal_error`), refused (where it
is) or deferred (I/O) — never as an exception that stops the run and the other files. Only a
failure to write the lake's staging area (`StagingError`) and the process being stopped go
through.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
import polars as pl

from servio import faults
from servio.raw import landing
from servio.raw.landing import FileRejected, LandedFile
from servio.schemas.raw import SOURCE_ROW, RawContract
from servio.schemas.sources import SOURCES
from servio.schemas.tables import DEFERRED, INGESTED, INTERNAL_ERROR, REJECTED
from servio.steps.context import RunContext
from servio.steps.discover import problem_of
from servio.steps.errors import ReconciliationError, StagingError
from servio.transforms import curate, standardise
from servio.transforms import quarantine as quarantine_rows
from servio.validation.rules import conflict_recipe, conflicting_rows

log = logging.getLogger("servio.steps.stage")

# Staged files are read once, by this run: lz4 writes about 2× faster than the zstd of
# published files (measured on 365 daily partitions of 1M rows: 2.1 s against 3.9 s).
INTERMEDIATE_COMPRESSION: Final = "lz4"
# Staged valid rows are sorted by partition and written in row groups of this many rows, so
# each merge group's scan skips, by row-group statistics, the rows of other partitions (a
# re-export spans the whole year; unsorted, every group would read all of it).
STAGED_ROW_GROUP_ROWS = 131_072
# Never caught at a file's boundary: the process is being stopped.
_STOPS = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)
# A full disk is the machine's problem, not the file's: the run fails, nothing is published.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@dataclass(frozen=True)
class StagedFile:
    """One landed file after parsing and validation, its outputs parked in staging."""

    landed: LandedFile
    status: str  # ingested, rejected, refused or deferred
    reason: str | None
    rows_read: int
    rows_valid: int
    rows_quarantined: int
    valid_path: str | None  # glob of the staged Parquet parts (valid-00000.parquet, …)
    quarantine_path: str | None  # glob of quarantine parts, or the rejected file's one row
    validation_path: str | None = None  # what the validator kept for the Data Docs


class _Step:
    """What staging is doing, for the reason of an unexpected failure."""

    def __init__(self) -> None:
        self.name = "opening the file"

    def __call__(self, name: str) -> None:
        self.name = name


def stage_file(ctx: RunContext, landed: LandedFile) -> StagedFile:
    """Parse, standardise and validate one file; park valid and quarantined rows in staging
    (the module docstring says what may come out of it)."""
    problem = problem_of(landed)
    if problem is not None:
        log.warning("%s %s: %s", landed.relative_path, problem.status, problem.code)
        return _unstaged(landed, problem.status, problem.code, problem.detail)
    step = _Step()
    try:
        # An object is downloaded once: staging reads a file more than once when it is big.
        with landing.local_copy(landed) as readable:
            staged = _stage(ctx, readable, step)
        step("checking that the file did not change while it was read")
        landing.check_unchanged(landed)
        return replace(staged, landed=landed)
    except FileRejected as rejected:
        return _rejected(ctx, landed, rejected)
    except StagingError:
        raise
    except _STOPS:
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
    ctx.lake.drop_staged(_staging_folder(ctx, landed))
    return _unstaged(landed, DEFERRED, code, detail)


def _unstaged(landed: LandedFile, status: str, code: str, detail: str) -> StagedFile:
    """A file left for a later run (refused or deferred): no rows, a reason."""
    if status == DEFERRED:
        detail += "; the next run tries again"
    return StagedFile(landed, status, f"{code}: {detail}", 0, 0, 0, None, None)


def _rejected(ctx: RunContext, landed: LandedFile, rejected: FileRejected) -> StagedFile:
    log.warning("%s rejected: %s", landed.relative_path, rejected.code)
    # A late chunk may reject the file: nothing of it stays staged but this row.
    ctx.lake.drop_staged(_staging_folder(ctx, landed))
    row = quarantine_rows.file_quarantine(
        source=landed.source,
        source_file=landed.relative_path,
        sha256=landed.sha256,
        code=rejected.code,
        detail=rejected.detail,
        run_id=ctx.run_id,
        quarantined_at=ctx.now(),
    )
    path = _write_stage(ctx, landed, "quarantine", row.collect())
    return StagedFile(landed, REJECTED, f"{rejected.code}: {rejected.detail}", 0, 0, 0, None, path)


def _internal_error(
    ctx: RunContext, landed: LandedFile, step: _Step, exc: BaseException
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


def _staging_folder(ctx: RunContext, landed: LandedFile) -> str:
    assert landed.sha256 is not None
    return ctx.lake.staging_file(ctx.run_id, "files", landed.sha256)


def _stage(ctx: RunContext, landed: LandedFile, step: _Step) -> StagedFile:
    """Stage the file chunk by chunk (`ctx.chunk_rows` rows at a time), each chunk's valid
    and quarantined rows to their own Parquet part, so memory is bounded by a chunk."""
    assert landed.sha256 is not None
    contract = SOURCES[landed.source].contract(ctx.settings.catalog)
    chunk_rows = ctx.chunk_rows
    step("reading the file")
    reader = landing.read_raw_chunks(landed, chunk_rows, contract.names)
    first = next(reader)
    faults.checkpoint("file_read", landed=landed)
    missing = standardise.missing_required(first.columns, contract)
    if missing:
        raise FileRejected(
            "missing_column", f"required column(s) {', '.join(missing)} not in the header"
        )
    conflicts: pl.DataFrame | None = None
    second = next(reader, None)
    chunks: Iterator[pl.DataFrame] = iter([first])  # the whole file is this one chunk
    if second is not None:
        # Rules spanning rows see the whole file first; then read again from the start.
        del first, second, chunks
        reader.close()
        step("finding conflicting duplicates across the file")
        conflicts = _file_conflicts(ctx, landed, contract)
        chunks = landing.read_raw_chunks(landed, chunk_rows, contract.names)
    lake, run_id = ctx.lake, ctx.run_id
    validation_path = lake.staging_file(run_id, "files", landed.sha256, "validation.json")
    kept: list[Any] = []  # what the validator keeps of each chunk, for the Data Docs
    rows_read = rows_valid = rows_quarantined = 0
    step("reading the file")
    for part, raw in enumerate(chunks):
        valid, quarantined = _stage_chunk(ctx, raw, part, contract, landed, kept, conflicts, step)
        rows_read += raw.height
        rows_valid += valid
        rows_quarantined += quarantined
        step("reading the file")
    kept_path: str | None = None
    if kept:
        step("writing the validation result")
        try:
            kept_path = ctx.validator.keep(kept, validation_path)
        except OSError as exc:
            raise StagingError.because(exc, f"cannot stage {landed.relative_path} ({exc})") from exc
    return StagedFile(
        landed,
        INGESTED,
        None,
        rows_read,
        rows_valid,
        rows_quarantined,
        lake.staging_file(run_id, "files", landed.sha256, "valid-*.parquet"),
        lake.staging_file(run_id, "files", landed.sha256, "quarantine-*.parquet"),
        kept_path,
    )


def _stage_chunk(
    ctx: RunContext,
    raw: pl.DataFrame,
    part: int,
    contract: RawContract,
    landed: LandedFile,
    kept: list[Any],
    conflicts: pl.DataFrame | None,
    step: _Step,
) -> tuple[int, int]:
    """Standardise and check one chunk; write its valid and quarantine parts. (valid, quarantined)"""
    settings = ctx.settings
    step(f"standardising records {_record_range(raw)}")
    faults.checkpoint("standardising", landed=landed)
    malformed = quarantine_rows.malformed_rows(raw.lazy()).collect()
    typed = standardise.standardise(raw.lazy(), contract, settings.source_timezone).collect()
    step(f"validating records {_record_range(raw)}")
    checked = ctx.validator.check(
        typed.drop(standardise.INVALID),
        contract,
        currency=settings.currency,
        ingested_at=ctx.started_at,
        file_label=landed.relative_path,
        conflicts=conflicts,
    )
    if checked.kept is not None:
        kept.append(checked.kept)
    step(f"building curated and quarantine rows of records {_record_range(raw)}")
    type_failures = standardise.type_failures(raw.lazy(), typed.lazy(), contract)
    failures = quarantine_rows.row_failures(
        malformed.lazy(), type_failures, checked.failures.lazy()
    ).collect()
    valid = quarantine_rows.valid_rows(typed.lazy(), failures.lazy()).drop(standardise.INVALID)
    del typed
    table = SOURCES[landed.source].table(settings.catalog)
    curated = curate.curated_rows(table, valid, settings.curation(), landed.relative_path).collect()
    quarantine = quarantine_rows.row_quarantine(
        raw.lazy(),
        failures.lazy(),
        contract,
        source=landed.source,
        source_file=landed.relative_path,
        sha256=landed.sha256,
        run_id=ctx.run_id,
        quarantined_at=ctx.now(),
    ).collect()
    if curated.height + quarantine.height != raw.height:
        raise ReconciliationError(
            f"{landed.relative_path}: read {raw.height} rows but {curated.height} valid + "
            f"{quarantine.height} quarantined"
        )
    by_partition = curated.sort(table.partition_by, maintain_order=True)  # rows stay in file order
    step(f"writing the staged rows of records {_record_range(raw)}")
    _write_stage(ctx, landed, f"valid-{part:05d}", by_partition)
    _write_stage(ctx, landed, f"quarantine-{part:05d}", quarantine)
    return curated.height, quarantine.height


def _record_range(raw: pl.DataFrame) -> str:
    if raw.is_empty():
        return "(none)"
    numbers = raw.get_column(SOURCE_ROW)
    return f"{int(numbers.min())}–{int(numbers.max())}"  # type: ignore[arg-type]


def _file_conflicts(
    ctx: RunContext, landed: LandedFile, contract: RawContract
) -> pl.DataFrame | None:
    """`validation.rules.conflicting_rows` over the whole file, in two reading passes that keep
    only a 64-bit hash per row, then the rows whose key repeats (in a normal export, none)."""
    recipe = conflict_recipe(contract)
    if recipe is None:
        return None
    key, version, content = recipe
    zone = ctx.settings.source_timezone
    key_value = standardise.parsed(contract, key, zone)
    hashes = [
        chunk.select(key_value).to_series().drop_nulls().hash().to_numpy()
        for chunk in landing.read_raw_chunks(landed, ctx.chunk_rows, contract.names)
    ]
    ordered = np.sort(np.concatenate(hashes))
    del hashes
    repeated = pl.Series(np.unique(ordered[1:][ordered[1:] == ordered[:-1]])).implode()
    del ordered
    is_candidate = key_value.is_not_null() & key_value.hash().is_in(repeated)
    candidates = [
        standardise.standardise(chunk.filter(is_candidate).lazy(), contract, zone)
        .select(SOURCE_ROW, *dict.fromkeys([key, *version, *content]))
        .collect()
        for chunk in landing.read_raw_chunks(landed, ctx.chunk_rows, contract.names)
    ]
    return conflicting_rows(pl.concat(candidates), key, version, content)


def _write_stage(ctx: RunContext, landed: LandedFile, kind: str, frame: pl.DataFrame) -> str:
    assert landed.sha256 is not None
    try:
        path = ctx.lake.staging_file(ctx.run_id, "files", landed.sha256, f"{kind}.parquet")
        faults.checkpoint("writing_staged_file", landed=landed)
        frame.write_parquet(
            path, compression=INTERMEDIATE_COMPRESSION, row_group_size=STAGED_ROW_GROUP_ROWS
        )
    except (pl.exceptions.ComputeError, OSError) as exc:  # polars reports a full disk as either
        raise StagingError.because(
            exc, f"cannot stage {landed.relative_path} ({exc}); nothing was published"
        ) from exc
    faults.checkpoint("file_staged")
    return path
