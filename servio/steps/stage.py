"""Step 2, stage the landed files, in two steps: `read_file` (one task per file) reads a file
in chunks and parks each standardised chunk, with its text, in the run's staging as a Parquet
part; `check_files` (once per run) checks the parts of every file of a source with the
validator in as few batches as memory allows — Great Expectations' cost is mostly fixed per
call, so a batch of many files pays it once — then writes each file's curated rows and
quarantine rows as Parquet parts (paths, never frames, go on to the publish step).
`stage_file` is both for one file.

Each file is its own boundary, in both steps: whatever happens to this file ends as its outcome —
ingested, rejected (its content; servio's own failure is `internal_error`), refused (where it
is) or deferred (I/O) — never as an exception that stops the run and the other files. Only a
failure to write the lake's staging area (`StagingError`) and the process being stopped go
through.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final

import polars as pl

from servio import faults
from servio.raw import landing
from servio.raw.landing import FileRejected, LandedFile
from servio.schemas.raw import FAILURE_SCHEMA, SOURCE_ROW, RawContract
from servio.schemas.sources import SOURCES
from servio.schemas.tables import DEFERRED, INGESTED, INTERNAL_ERROR, REJECTED
from servio.steps.context import RunContext
from servio.steps.discover import problem_of
from servio.steps.errors import ReconciliationError, StagingError
from servio.transforms import curate, standardise
from servio.transforms import quarantine as quarantine_rows
from servio.validation.rules import (
    batch_row_id,
    conflict_recipe,
    conflicts_in,
    file_of,
    record_of,
)

log = logging.getLogger("servio.steps.stage")

# Staged files are read once, by this run: lz4 writes about 2× faster than the zstd of
# published files (measured on 365 daily partitions of 1M rows: 2.1 s against 3.9 s).
INTERMEDIATE_COMPRESSION: Final = "lz4"
# Staged valid rows are sorted by partition and written in row groups of this many rows, so
# each merge group's scan skips, by row-group statistics, the rows of other partitions (a
# re-export spans the whole year; unsorted, every group would read all of it).
STAGED_ROW_GROUP_ROWS = 131_072
# Rows checked by one call of the validator: the rows of many files (its fixed cost, ~1.5 s,
# is paid once per batch), bounded because GX holds a batch's columns while it checks them:
# checking the 1 M interactions of the 1M benchmark in one batch raised the peak RSS from
# 456 to 715 MiB, so a batch of 4 M rows should add about 1 GB. At 1M a source is one batch.
VALIDATION_BATCH_ROWS = 4_000_000
# Prefix of a column's text in a checked part (beside its typed value of the same name).
_TEXT = "__text__."
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
    checked_path: str | None = None  # read but not yet checked: glob of its checked parts


class _Step:
    """What staging is doing, for the reason of an unexpected failure."""

    def __init__(self, name: str = "opening the file") -> None:
        self.name = name

    def __call__(self, name: str) -> None:
        self.name = name


def stage_file(ctx: RunContext, landed: LandedFile) -> StagedFile:
    """Read, standardise and validate one file; park its valid and quarantined rows in
    staging (the module docstring says what may come out of it)."""
    [staged] = check_files(ctx, [read_file(ctx, landed)])
    return staged


def read_file(ctx: RunContext, landed: LandedFile) -> StagedFile:
    """Read and standardise one file chunk by chunk into `checked-NNNNN.parquet` parts, for
    `check_files` (the module docstring says what may come out of it)."""
    problem = problem_of(landed)
    if problem is not None:
        log.warning("%s %s: %s", landed.relative_path, problem.status, problem.code)
        return _unstaged(landed, problem.status, problem.code, problem.detail)
    step = _Step()

    def read() -> StagedFile:
        # An object is downloaded once: staging reads a file more than once when it is big.
        with landing.local_copy(landed) as readable:
            staged = _read(ctx, readable, step)
        step("checking that the file did not change while it was read")
        landing.check_unchanged(landed)
        return replace(staged, landed=landed)

    return _at_boundary(ctx, landed, step, read)


def _at_boundary(
    ctx: RunContext, landed: LandedFile, step: _Step, work: Callable[[], StagedFile]
) -> StagedFile:
    """`work` for one file; whatever goes wrong with the file becomes its outcome."""
    try:
        return work()
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


def _staged(ctx: RunContext, landed: LandedFile, name: str) -> str:
    assert landed.sha256 is not None
    return ctx.lake.staging_file(ctx.run_id, "files", landed.sha256, name)


def _read(ctx: RunContext, landed: LandedFile, step: _Step) -> StagedFile:
    """Standardise the file chunk by chunk (`ctx.chunk_rows` rows at a time), each chunk's
    typed values and text to its own Parquet part, so memory is bounded by a chunk."""
    contract = SOURCES[landed.source].contract(ctx.settings.catalog)
    step("reading the file")
    reader = landing.read_raw_chunks(landed, ctx.chunk_rows, contract.names)
    first = next(reader)
    faults.checkpoint("file_read", landed=landed)
    missing = standardise.missing_required(first.columns, contract)
    if missing:
        raise FileRejected(
            "missing_column", f"required column(s) {', '.join(missing)} not in the header"
        )
    rows_read = 0
    chunks = itertools.chain([first], reader)
    del first
    for part, raw in enumerate(chunks):
        step(f"standardising records {_record_range(raw)}")
        faults.checkpoint("standardising", landed=landed)
        typed = standardise.standardise(raw.lazy(), contract, ctx.settings.source_timezone)
        # The text is kept beside the typed values: a failing row's quarantine record and its
        # type failures quote it.
        text = raw.lazy().select(pl.all().exclude(SOURCE_ROW).name.prefix(_TEXT))
        checked = pl.concat([typed, text], how="horizontal").collect()
        step(f"writing the staged rows of records {_record_range(raw)}")
        _write_stage(ctx, landed, f"checked-{part:05d}", checked)
        rows_read += raw.height
        step("reading the file")
    checked_path = _staged(ctx, landed, "checked-*.parquet")
    return StagedFile(landed, INGESTED, None, rows_read, 0, 0, None, None, None, checked_path)


def check_files(ctx: RunContext, files: Sequence[StagedFile]) -> list[StagedFile]:
    """Validate the read files (`read_file`) source by source, in batches of up to
    `VALIDATION_BATCH_ROWS` rows (many files, or a part of one big file), then write each
    file's valid and quarantine parts. Files that were not read come back as they are."""
    done: dict[int, StagedFile] = {}
    by_source: dict[str, list[int]] = {}
    for position, staged in enumerate(files):
        if staged.checked_path is None:
            done[position] = staged
        else:
            by_source.setdefault(staged.landed.source, []).append(position)
    for source, positions in by_source.items():
        chosen = [files[p] for p in positions]
        for position, staged in zip(positions, _check_source(ctx, source, chosen), strict=True):
            done[position] = staged
    return [done[p] for p in range(len(files))]


def by_source(files: Sequence[StagedFile]) -> list[list[int]]:
    """The positions of the files, grouped by source (first seen first): what one
    `check_files` call should get."""
    groups: dict[str, list[int]] = {}
    for position, staged in enumerate(files):
        groups.setdefault(staged.landed.source, []).append(position)
    return list(groups.values())


@dataclass(eq=False)  # compared and hashed by identity
class _Checking:
    """One read file while its source is checked."""

    staged: StagedFile
    parts: list[tuple[str, int]]  # its checked parts and their rows
    conflicts: pl.DataFrame | None = None  # conflicting rows of the whole file
    failures: list[pl.DataFrame] = field(default_factory=list)  # rule failures (records)
    kept: list[Any] = field(default_factory=list)  # what the validator kept, per batch
    outcome: StagedFile | None = None  # set when the file failed while being checked


def _check_source(ctx: RunContext, source: str, files: list[StagedFile]) -> list[StagedFile]:
    contract = SOURCES[source].contract(ctx.settings.catalog)
    checking = []
    for staged in files:
        step = _Step("finding conflicting duplicates across the file")

        def prepare(staged: StagedFile = staged, step: _Step = step) -> StagedFile:
            parts = ctx.lake.staged_parts(staged.checked_path)
            entry = _Checking(staged, [(p, _rows_of(p)) for p in parts])
            entry.conflicts = _file_conflicts(ctx, contract, parts)
            checking.append(entry)
            return staged

        outcome = _at_boundary(ctx, staged.landed, step, prepare)
        if outcome is not staged:
            checking.append(_Checking(staged, [], outcome=outcome))
    for batch in _batches(checking):
        _check_batch(ctx, contract, batch)
    results = []
    for entry in checking:
        if entry.outcome is None:
            step = _Step("building curated and quarantine rows")
            entry.outcome = _at_boundary(
                ctx, entry.staged.landed, step, partial(_finish, ctx, contract, entry, step)
            )
        results.append(entry.outcome)
    return results


def _rows_of(part: str) -> int:
    return int(pl.scan_parquet(part).select(pl.len()).collect().item())


def _batches(checking: list[_Checking]) -> Iterator[list[tuple[_Checking, str]]]:
    """Consecutive parts of the files, up to `VALIDATION_BATCH_ROWS` rows a batch (at least
    one part)."""
    batch: list[tuple[_Checking, str]] = []
    rows = 0
    for entry in checking:
        for part, part_rows in entry.parts:
            if batch and rows + part_rows > VALIDATION_BATCH_ROWS:
                yield batch
                batch, rows = [], 0
            batch.append((entry, part))
            rows += part_rows
    if batch:
        yield batch


def _check_batch(
    ctx: RunContext, contract: RawContract, batch: list[tuple[_Checking, str]]
) -> None:
    """One validator call for the batch's parts; a failure of the validator is tried again
    file by file, so only the file it fails on is rejected."""
    entries = list(dict.fromkeys(entry for entry, _ in batch if entry.outcome is None))
    if not entries:
        return
    if len(entries) > 1:
        try:
            _validate(ctx, contract, batch, entries)
            return
        except _STOPS:
            raise
        except Exception:
            log.warning("validating %d files at once failed: trying each alone", len(entries))
    for entry in entries:
        step = _Step(f"validating the records of {entry.staged.landed.relative_path}")
        mine = [(e, part) for e, part in batch if e is entry]

        def validate(
            entry: _Checking = entry, mine: list[tuple[_Checking, str]] = mine
        ) -> StagedFile:
            _validate(ctx, contract, mine, [entry])
            return entry.staged

        outcome = _at_boundary(ctx, entry.staged.landed, step, validate)
        if outcome is not entry.staged:
            entry.outcome = outcome


def _validate(
    ctx: RunContext,
    contract: RawContract,
    batch: list[tuple[_Checking, str]],
    entries: list[_Checking],
) -> None:
    index = {entry: i for i, entry in enumerate(entries)}
    settings = ctx.settings
    typed = pl.concat(
        [
            pl.scan_parquet(part).select(batch_row_id(index[entry]), *contract.names)
            for entry, part in batch
            if entry in index
        ]
    )
    conflicts = [
        entry.conflicts.with_columns(batch_row_id(index[entry]))
        for entry in entries
        if entry.conflicts is not None
    ]
    checked = ctx.validator.check(
        typed,
        contract,
        currency=settings.currency,
        ingested_at=ctx.started_at,
        files=[entry.staged.landed.relative_path for entry in entries],
        conflicts=pl.concat(conflicts) if conflicts else None,
    )
    found = checked.failures.with_columns(file_of(pl.col(SOURCE_ROW)).alias("_file"))
    for position, entry in enumerate(entries):
        entry.failures.append(
            found.filter(pl.col("_file") == position).select(
                record_of(pl.col(SOURCE_ROW)).alias(SOURCE_ROW), "reason_code", "detail"
            )
        )
        kept = checked.kept[position] if position < len(checked.kept) else None
        if kept is not None:
            entry.kept.append(kept)


def _finish(ctx: RunContext, contract: RawContract, entry: _Checking, step: _Step) -> StagedFile:
    """Each checked part of the file → its valid and quarantine parts, then the kept result."""
    landed = entry.staged.landed
    rule_failures = pl.concat([pl.DataFrame(schema=FAILURE_SCHEMA), *entry.failures])
    rows_read = rows_valid = rows_quarantined = 0
    for number, (part, _) in enumerate(entry.parts):
        checked = pl.read_parquet(part)
        valid, quarantined = _finish_chunk(
            ctx, checked, number, contract, landed, rule_failures, step
        )
        rows_read += checked.height
        rows_valid += valid
        rows_quarantined += quarantined
    if rows_read != entry.staged.rows_read:
        raise ReconciliationError(
            f"{landed.relative_path}: read {entry.staged.rows_read} rows but staged {rows_read}"
        )
    kept_path: str | None = None
    if entry.kept:
        step("writing the validation result")
        try:
            kept_path = ctx.validator.keep(entry.kept, _staged(ctx, landed, "validation.json"))
        except OSError as exc:
            raise StagingError.because(exc, f"cannot stage {landed.relative_path} ({exc})") from exc
    for part, _ in entry.parts:
        ctx.lake.drop_staged(part)
    return StagedFile(
        landed,
        INGESTED,
        None,
        rows_read,
        rows_valid,
        rows_quarantined,
        _staged(ctx, landed, "valid-*.parquet"),
        _staged(ctx, landed, "quarantine-*.parquet"),
        kept_path,
    )


def _finish_chunk(
    ctx: RunContext,
    checked: pl.DataFrame,
    part: int,
    contract: RawContract,
    landed: LandedFile,
    rule_failures: pl.DataFrame,
    step: _Step,
) -> tuple[int, int]:
    """One checked part's curated and quarantine rows, written. (valid, quarantined)"""
    settings = ctx.settings
    text_columns = [c for c in checked.columns if c.startswith(_TEXT)]
    raw = checked.select(
        SOURCE_ROW, *[pl.col(c).alias(c.removeprefix(_TEXT)) for c in text_columns]
    )
    typed = checked.drop(text_columns)
    step(f"building curated and quarantine rows of records {_record_range(raw)}")
    malformed = quarantine_rows.malformed_rows(raw.lazy())
    type_failures = standardise.type_failures(raw.lazy(), typed.lazy(), contract)
    mine = rule_failures.lazy().join(raw.lazy().select(SOURCE_ROW), on=SOURCE_ROW, how="semi")
    failures = quarantine_rows.row_failures(malformed, type_failures, mine).collect()
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
    ctx: RunContext, contract: RawContract, parts: list[str]
) -> pl.DataFrame | None:
    """`validation.rules.conflicting_rows` over the whole file, from its checked parts (the
    standardised key of every row; only the rows whose key repeats are held whole)."""
    recipe = conflict_recipe(contract)
    if recipe is None:
        return None
    key, version, content = recipe
    if not parts:
        return None
    return conflicts_in(pl.scan_parquet(parts), key, version, content)


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
