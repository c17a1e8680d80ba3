"""The steps of a servio run as plain functions: stage one landed file, publish a batch of
staged files, build the snapshots. Prefect flows (`flows/`) wire these; tests may call them
directly. Steps hand each other paths (staged Parquet files), never DataFrames."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import shutil
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from servio import faults, landing, objectstore, snapshots
from servio.config import Settings, check_raw_root
from servio.landing import FileRejected, LandedFile
from servio.schemas.raw import SOURCE_ROW, RawContract
from servio.schemas.snapshot_tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    customer_quality_table,
)
from servio.schemas.sources import SOURCES, source_tables
from servio.schemas.table import CuratedTable
from servio.schemas.tables import (
    DEFERRED,
    DUPLICATE,
    INGEST_LEDGER,
    INGESTED,
    INTERNAL_ERROR,
    QUARANTINE,
    REFUSED,
    REJECTED,
    curated_tables,
)
from servio.storage import (
    Lake,
    PartitionRows,
    PartitionValue,
    ReconciliationError,
    TableChange,
    partition_text,
    write_partition_file,
)
from servio.transforms import curate, ledger, standardise, versions
from servio.transforms import quarantine as quarantine_rows
from servio.transforms.ledger import is_remembered, remembers
from servio.validation import datadocs
from servio.validation.results import read_result_text
from servio.validation.rules import Validator, conflict_recipe, conflicting_rows

log = logging.getLogger("servio.pipeline")

# Rows staged at a time: bounds staging memory (a 1 M-row interactions chunk peaks near
# 1.5 GB with the GX suite); a file up to this size is staged in one piece, as before.
STAGE_CHUNK_ROWS = 1_000_000
# Rows (existing + new) of the partitions merged together in one step of `_merge_source`.
MERGE_GROUP_ROWS = 1_000_000
# Staged files are read once, by this run: lz4 writes about 2× faster than the zstd of
# published files (measured on 365 daily partitions of 1M rows: 2.1 s against 3.9 s).
INTERMEDIATE_COMPRESSION: Final = "lz4"
# Staged valid rows are sorted by partition and written in row groups of this many rows, so
# each merge group's scan skips, by row-group statistics, the rows of other partitions (a
# re-export spans the whole year; unsorted, every group would read all of it).
STAGED_ROW_GROUP_ROWS = 131_072

# Folder of the Data Docs where a run keeps its GX results until they are rendered.
PENDING_RESULTS = "pending"
# Never caught at a file's boundary: the process is being stopped.
_STOPS = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)
# A full disk is the machine's problem, not the file's: the run fails, nothing is published.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class StagingError(OSError):
    """Writing to the lake's staging area failed (a full disk): the run stops, the tables
    stay as they were (RELIABILITY.md row 4). Not a problem of the file being staged."""


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
    validation_path: str | None = None  # GX result (JSON) for Data Docs


def contract_for(source: str, settings: Settings) -> RawContract:
    return SOURCES[source].contract(settings.catalog)


def table_for(source: str, settings: Settings) -> CuratedTable:
    return SOURCES[source].table(settings.catalog)


# ---------------------------------------------------------------------------------------
# discovery


def remembered_files(lake: Lake) -> pl.DataFrame:
    """(source_file, sha256) of the ledger's remembered rows (`is_remembered`)."""
    return (
        lake.scan(INGEST_LEDGER)
        .filter(is_remembered(pl.col("status"), pl.col("reason")))
        .select("source_file", "sha256")
        .collect()
    )


def pending_files(settings: Settings, lake: Lake) -> tuple[list[LandedFile], list[LandedFile]]:
    """(files to stage, files whose content is already known) — hashes decide, not names.

    Files discovery could not read are in the first list with their problem: staging them
    records why, once (RELIABILITY.md, "hash memory").
    """
    ledger = remembered_files(lake)
    known_hashes = set(ledger["sha256"].to_list())
    known_paths = set(zip(ledger["source_file"].to_list(), ledger["sha256"].to_list(), strict=True))
    todo: list[LandedFile] = []
    duplicates: list[LandedFile] = []
    seen: set[str] = set()
    for landed in landing.discover(settings.raw_root):
        if _problem_of(landed) is not None or landed.sha256 is None:
            todo.append(landed)
            continue
        if (landed.relative_path, landed.sha256) in known_paths:
            continue  # this very file was handled by an earlier run
        if landed.sha256 in known_hashes or landed.sha256 in seen:
            duplicates.append(landed)
            continue
        seen.add(landed.sha256)
        todo.append(landed)
    return todo, duplicates


_UNKNOWN_SOURCE = landing.FileProblem(
    REFUSED,
    "unknown_source",
    "not in a source folder: the folder under the raw root must be interactions/ or surveys/",
)


def _problem_of(landed: LandedFile) -> landing.FileProblem | None:
    """Why the file is not read this run (its location or an I/O failure), if it is not."""
    if landed.problem is None and landed.source not in SOURCES:
        return _UNKNOWN_SOURCE
    return landed.problem


# ---------------------------------------------------------------------------------------
# staging one file


class _Step:
    """What staging is doing, for the reason of an unexpected failure."""

    def __init__(self) -> None:
        self.name = "opening the file"

    def __call__(self, name: str) -> None:
        self.name = name


def stage_file(
    landed: LandedFile,
    settings: Settings,
    lake: Lake,
    run_id: str,
    ingested_at: datetime,
    validator: Validator,
) -> StagedFile:
    """Parse, standardise and validate one file; park valid and quarantined rows in staging.

    The file's boundary: whatever happens to this file ends as its outcome — ingested,
    rejected (content; servio's own failure is `internal_error`), refused (location) or
    deferred (I/O) — never as an exception that would stop the run and the other files.
    Only a failure to write the lake's staging area (`StagingError`) and the process being
    stopped go through.
    """
    problem = _problem_of(landed)
    if problem is not None:
        log.warning("%s %s: %s", landed.relative_path, problem.status, problem.code)
        return _unstaged(landed, problem.status, problem.code, problem.detail)
    step = _Step()
    try:
        # An object is downloaded once: staging reads a file more than once when it is big.
        with landing.local_copy(landed) as readable:
            staged = _stage(readable, settings, lake, run_id, ingested_at, validator, step)
        step("checking that the file did not change while it was read")
        landing.check_unchanged(landed)
        return replace(staged, landed=landed)
    except FileRejected as rejected:
        return _rejected(landed, lake, run_id, rejected)
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
            return _internal_error(landed, lake, run_id, step, exc)
        deferral = landing.deferral_of(exc)
        code, detail = deferral.code, deferral.detail
    except BaseException as exc:  # a Rust panic (pyo3's PanicException) is one
        return _internal_error(landed, lake, run_id, step, exc)
    log.warning("%s deferred: %s", landed.relative_path, code)
    _remove_staged(_staging_folder(lake, run_id, landed))
    return _unstaged(landed, DEFERRED, code, detail)


def _unstaged(landed: LandedFile, status: str, code: str, detail: str) -> StagedFile:
    """A file left for a later run (refused or deferred): no rows, a reason."""
    if status == DEFERRED:
        detail += "; the next run tries again"
    return StagedFile(landed, status, f"{code}: {detail}", 0, 0, 0, None, None)


def _rejected(landed: LandedFile, lake: Lake, run_id: str, rejected: FileRejected) -> StagedFile:
    log.warning("%s rejected: %s", landed.relative_path, rejected.code)
    # A late chunk may reject the file: nothing of it stays staged but this row.
    _remove_staged(_staging_folder(lake, run_id, landed))
    row = quarantine_rows.file_quarantine(
        source=landed.source,
        source_file=landed.relative_path,
        sha256=landed.sha256,
        code=rejected.code,
        detail=rejected.detail,
        run_id=run_id,
        quarantined_at=datetime.now(UTC),
    )
    path = _write_stage(lake, run_id, landed, "quarantine", row.collect())
    return StagedFile(landed, REJECTED, f"{rejected.code}: {rejected.detail}", 0, 0, 0, None, path)


def _internal_error(
    landed: LandedFile, lake: Lake, run_id: str, step: _Step, exc: BaseException
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
    return _rejected(landed, lake, run_id, FileRejected(INTERNAL_ERROR, detail))


def _staging_folder(lake: Lake, run_id: str, landed: LandedFile) -> str:
    assert landed.sha256 is not None
    return lake.staging_file(run_id, "files", landed.sha256)


def _stage(
    landed: LandedFile,
    settings: Settings,
    lake: Lake,
    run_id: str,
    ingested_at: datetime,
    validator: Validator,
    step: _Step,
) -> StagedFile:
    """Stage the file chunk by chunk (`STAGE_CHUNK_ROWS` rows at a time), each chunk's valid
    and quarantined rows to their own Parquet part, so memory is bounded by a chunk."""
    assert landed.sha256 is not None
    contract = contract_for(landed.source, settings)
    chunk_rows = STAGE_CHUNK_ROWS
    step("reading the file")
    reader = landing.read_raw_chunks(landed, chunk_rows, contract.names)
    first = next(reader)
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
        conflicts = _file_conflicts(landed, contract, settings, chunk_rows)
        chunks = landing.read_raw_chunks(landed, chunk_rows, contract.names)
    validation_path = lake.staging_file(run_id, "files", landed.sha256, "validation.json")
    kept: list[Any] = []  # what the validator keeps of each chunk, for the Data Docs
    rows_read = rows_valid = rows_quarantined = 0
    step("reading the file")
    for part, raw in enumerate(chunks):
        valid, quarantined = _stage_chunk(
            raw,
            part,
            contract,
            landed,
            settings,
            lake,
            run_id,
            ingested_at,
            validator,
            kept,
            conflicts,
            step,
        )
        rows_read += raw.height
        rows_valid += valid
        rows_quarantined += quarantined
        step("reading the file")
    kept_path: str | None = None
    if kept:
        step("writing the validation result")
        try:
            kept_path = validator.keep(kept, validation_path)
        except OSError as exc:
            raise StagingError(f"cannot stage {landed.relative_path} ({exc})") from exc
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
    raw: pl.DataFrame,
    part: int,
    contract: RawContract,
    landed: LandedFile,
    settings: Settings,
    lake: Lake,
    run_id: str,
    ingested_at: datetime,
    validator: Validator,
    kept: list[Any],
    conflicts: pl.DataFrame | None,
    step: _Step,
) -> tuple[int, int]:
    """Standardise and check one chunk; write its valid and quarantine parts. (valid, quarantined)"""
    step(f"standardising records {_record_range(raw)}")
    malformed = quarantine_rows.malformed_rows(raw.lazy()).collect()
    typed = standardise.standardise(raw.lazy(), contract, settings.source_timezone).collect()
    step(f"validating records {_record_range(raw)}")
    checked = validator.check(
        typed.drop(standardise.INVALID),
        contract,
        currency=settings.currency,
        ingested_at=ingested_at,
        file_label=landed.relative_path,
        conflicts=conflicts,
    )
    if checked.kept is not None:
        kept.append(checked.kept)
    rule_failures = checked.failures
    step(f"building curated and quarantine rows of records {_record_range(raw)}")
    type_failures = standardise.type_failures(raw.lazy(), typed.lazy(), contract)
    failures = quarantine_rows.row_failures(
        malformed.lazy(), type_failures, rule_failures.lazy()
    ).collect()
    valid = quarantine_rows.valid_rows(typed.lazy(), failures.lazy()).drop(standardise.INVALID)
    del typed
    table = table_for(landed.source, settings)
    curated = curate.curated_rows(table, valid, settings.curation(), landed.relative_path).collect()
    quarantine = quarantine_rows.row_quarantine(
        raw.lazy(),
        failures.lazy(),
        contract,
        source=landed.source,
        source_file=landed.relative_path,
        sha256=landed.sha256,
        run_id=run_id,
        quarantined_at=datetime.now(UTC),
    ).collect()
    if curated.height + quarantine.height != raw.height:
        raise ReconciliationError(
            f"{landed.relative_path}: read {raw.height} rows but {curated.height} valid + "
            f"{quarantine.height} quarantined"
        )
    partition = table.partition_by
    by_partition = curated.sort(partition, maintain_order=True)  # rows stay in file order
    step(f"writing the staged rows of records {_record_range(raw)}")
    _write_stage(lake, run_id, landed, f"valid-{part:05d}", by_partition)
    _write_stage(lake, run_id, landed, f"quarantine-{part:05d}", quarantine)
    return curated.height, quarantine.height


def _record_range(raw: pl.DataFrame) -> str:
    if raw.is_empty():
        return "(none)"
    numbers = raw.get_column(SOURCE_ROW)
    return f"{int(numbers.min())}–{int(numbers.max())}"  # type: ignore[arg-type]


def _file_conflicts(
    landed: LandedFile, contract: RawContract, settings: Settings, chunk_rows: int
) -> pl.DataFrame | None:
    """`validation.rules.conflicting_rows` over the whole file, in two reading passes that keep only
    a 64-bit hash per row, then the rows whose key repeats (in a normal export, none)."""
    recipe = conflict_recipe(contract)
    if recipe is None:
        return None
    key, version, content = recipe
    key_value = standardise.parsed(contract, key, settings.source_timezone)
    hashes = [
        chunk.select(key_value).to_series().drop_nulls().hash().to_numpy()
        for chunk in landing.read_raw_chunks(landed, chunk_rows, contract.names)
    ]
    ordered = np.sort(np.concatenate(hashes))
    del hashes
    repeated = pl.Series(np.unique(ordered[1:][ordered[1:] == ordered[:-1]])).implode()
    del ordered
    is_candidate = key_value.is_not_null() & key_value.hash().is_in(repeated)
    candidates = [
        standardise.standardise(
            chunk.filter(is_candidate).lazy(), contract, settings.source_timezone
        )
        .select("source_row", *dict.fromkeys([key, *version, *content]))
        .collect()
        for chunk in landing.read_raw_chunks(landed, chunk_rows, contract.names)
    ]
    return conflicting_rows(pl.concat(candidates), key, version, content)


def keep_validation_results(staged: Iterable[StagedFile], lake: Lake, run_id: str) -> None:
    """Copy this run's GX results beside the Data Docs before the run publishes (under the
    lock): a run killed after its publish, or whose Data Docs could not be written (a full
    disk), leaves them for the next run's `build_data_docs`."""
    pending = lake.data_docs_dir / PENDING_RESULTS / run_id
    for item in staged:
        if item.validation_path and item.landed.sha256:
            pending.mkdir(parents=True, exist_ok=True)
            partial = pending / f".{item.landed.sha256}.json.partial"
            partial.write_text(read_result_text(item.validation_path), encoding="utf-8")
            partial.replace(pending / f"{item.landed.sha256}.json")


def build_data_docs(lake: Lake) -> Path | None:
    """Add the validation results of every published run not yet shown — this run's, and any
    left by a run killed after its publish — to the lake's Great Expectations Data Docs.
    Call under the lock, after `keep_validation_results` and the publish."""
    pending = lake.data_docs_dir / PENDING_RESULTS
    if not pending.is_dir():
        return None
    published = set(
        lake.scan(INGEST_LEDGER).select("run_id").unique().collect().get_column("run_id")
    )
    runs = sorted(p for p in pending.iterdir() if p.is_dir())
    # Under the lock no other run is between its copy and its publish: a run not in the
    # ledger was killed before its commit, and its files are staged again by a later run.
    for orphan in (r for r in runs if r.name not in published):
        shutil.rmtree(orphan, ignore_errors=True)
    shown = [r for r in runs if r.name in published]
    results = [str(p) for run in shown for p in sorted(run.glob("*.json"))]
    if not results:
        return None
    gx_index = datadocs.render(results, lake.data_docs_dir)
    index = datadocs.offline_index(gx_index)
    for run in shown:  # rendered: kept in data_docs/results from now on
        shutil.rmtree(run, ignore_errors=True)
    return index


def _write_stage(
    lake: Lake, run_id: str, landed: LandedFile, kind: str, frame: pl.DataFrame
) -> str:
    assert landed.sha256 is not None
    try:
        path = lake.staging_file(run_id, "files", landed.sha256, f"{kind}.parquet")
        frame.write_parquet(
            path, compression=INTERMEDIATE_COMPRESSION, row_group_size=STAGED_ROW_GROUP_ROWS
        )
    except (pl.exceptions.ComputeError, OSError) as exc:  # polars reports a full disk as either
        raise StagingError(
            f"cannot stage {landed.relative_path} ({exc}); nothing was published"
        ) from exc
    faults.checkpoint("file_staged")
    return path


# ---------------------------------------------------------------------------------------
# publishing a batch


@dataclass(frozen=True)
class IngestSummary:
    files_ingested: int
    files_rejected: int
    files_duplicate: int
    rows_read: int
    rows_valid: int
    rows_quarantined: int
    table_rows: dict[str, int]
    files_deferred: int = 0  # refused or deferred: left for a later run, with a reason


def publish_ingest(
    staged: list[StagedFile],
    duplicates: list[LandedFile],
    settings: Settings,
    lake: Lake,
    run_id: str,
) -> IngestSummary:
    """Merge staged files into the curated tables, quarantine and ledger as one publication.

    Call under the lake lock. Files whose content the ledger already holds (another run got
    there first) are recorded as duplicates, not ingested twice.
    """
    now = datetime.now(UTC)
    ledger = lake.scan(INGEST_LEDGER).collect()
    new_entries, accepted = _ledger_entries(ledger, staged, duplicates, run_id, now)

    changes: list[TableChange] = []
    superseded_now: dict[int, int] = {}
    curated_counts: dict[int, int] = {}
    table_rows: dict[str, int] = {}
    for source in SOURCES:
        table = table_for(source, settings)
        batch = [(seq, s) for seq, s in accepted if s.landed.source == source and s.valid_path]
        scratch = lake.scratch_dir(run_id) / "merge" / table.name
        change, dropped, counts, total = _merge_source(lake, table, batch, scratch)
        if change is not None:
            changes.append(change)
        superseded_now.update(dropped)
        curated_counts.update(counts)
        table_rows[table.name] = total

    quarantine_change = _quarantine_change(
        lake, [s for _, s in accepted], lake.scratch_dir(run_id) / "merge" / QUARANTINE.name
    )
    if quarantine_change is not None:
        changes.append(quarantine_change)

    all_entries = (
        pl.concat([ledger, pl.DataFrame(new_entries, schema=INGEST_LEDGER.schema)])
        if new_entries
        else ledger
    )
    all_entries = _reconcile(all_entries, superseded_now, curated_counts)
    changes.append(TableChange(INGEST_LEDGER, {None: all_entries}))
    if accepted or new_entries:
        lake.publish(run_id, changes)
        faults.checkpoint("after_ingest_publish")
        maintain_if_due(lake, settings)
    shutil.rmtree(lake.scratch_dir(run_id) / "merge", ignore_errors=True)
    table_rows[QUARANTINE.name] = lake.scan(QUARANTINE).select(pl.len()).collect().item()
    return IngestSummary(
        files_ingested=sum(1 for _, s in accepted if s.status == INGESTED),
        files_rejected=sum(1 for _, s in accepted if s.status == REJECTED),
        files_duplicate=sum(1 for e in new_entries if e["status"] == DUPLICATE),
        rows_read=sum(s.rows_read for _, s in accepted),
        rows_valid=sum(s.rows_valid for _, s in accepted),
        rows_quarantined=sum(s.rows_quarantined for _, s in accepted),
        table_rows=table_rows,
        files_deferred=sum(1 for s in staged if s.status in (REFUSED, DEFERRED)),
    )


def _ledger_entries(
    ledger: pl.DataFrame,
    staged: list[StagedFile],
    duplicates: list[LandedFile],
    run_id: str,
    now: datetime,
) -> tuple[list[dict[str, object]], list[tuple[int, StagedFile]]]:
    """This batch's new ledger rows, and the staged files (with their `source_seq`) whose rows
    are published.

    A content verdict is remembered by hash: known content is a duplicate. A file refused
    (location), deferred (I/O) or failed by servio itself is recorded only when its (path,
    content, status, reason) is new, so a run over an unchanged corpus adds nothing; its
    bytes stay eligible for the next run.
    """
    remembered = ledger.filter(is_remembered(pl.col("status"), pl.col("reason")))
    known = dict(
        zip(remembered["sha256"].to_list(), remembered["source_file"].to_list(), strict=True)
    )
    known_paths = set(zip(remembered["source_file"], remembered["sha256"], strict=True))
    recorded = set(ledger.select("source_file", "sha256", "status", "reason").iter_rows())
    next_seq = int(ledger.select(pl.col("source_seq").max()).item() or 0) + 1
    new_entries: list[dict[str, object]] = []
    accepted: list[tuple[int, StagedFile]] = []
    for item in sorted(staged, key=lambda s: s.landed.relative_path):
        landed = item.landed
        if not remembers(item.status, item.reason):
            outcome = (landed.relative_path, landed.sha256, item.status, item.reason)
            if outcome in recorded:
                continue  # the same unchanged failure as an earlier run: nothing new
            recorded.add(outcome)
            new_entries.append(_ledger_entry(next_seq, landed, item.status, run_id, now, item))
            if item.quarantine_path:
                accepted.append((next_seq, item))
        elif landed.sha256 in known:
            new_entries.append(
                _ledger_entry(
                    next_seq, landed, DUPLICATE, run_id, now, duplicate_of=known[landed.sha256]
                )
            )
        else:
            assert landed.sha256 is not None
            known[landed.sha256] = landed.relative_path
            new_entries.append(_ledger_entry(next_seq, landed, item.status, run_id, now, item))
            accepted.append((next_seq, item))
        next_seq += 1
    for landed in duplicates:
        if (landed.relative_path, landed.sha256) in known_paths:
            continue
        new_entries.append(
            _ledger_entry(
                next_seq, landed, DUPLICATE, run_id, now, duplicate_of=known.get(landed.sha256)
            )
        )
        next_seq += 1
    return new_entries, accepted


def _ledger_entry(
    seq: int,
    landed: LandedFile,
    status: str,
    run_id: str,
    now: datetime,
    staged: StagedFile | None = None,
    duplicate_of: str | None = None,
) -> dict[str, object]:
    return {
        "source_seq": seq,
        "source_file": landed.relative_path,
        "source": landed.source,
        "file_format": landed.file_format,
        "size_bytes": landed.size_bytes,
        "sha256": landed.sha256,
        "status": status,
        "reason": staged.reason if staged else f"same content as {duplicate_of}",
        "duplicate_of": duplicate_of,
        "rows_read": staged.rows_read if staged else 0,
        "rows_valid": staged.rows_valid if staged else 0,
        "rows_quarantined": staged.rows_quarantined if staged else 0,
        "rows_curated": 0,
        "rows_superseded": 0,
        "run_id": run_id,
        "ingested_at": now,
    }


def _merge_source(
    lake: Lake, table: CuratedTable, batch: list[tuple[int, StagedFile]], scratch: Path
) -> tuple[TableChange | None, dict[int, int], dict[int, int], int]:
    """Merge a batch into one table; returns the change, rows superseded per file (this run),
    current rows per file, and the table's row count after the merge.

    Memory stays bounded for big inputs: versions are ranked only for rows whose key hash
    occurs twice among the table's and the batch's rows (8 bytes per row to find them); the
    touched partitions are merged in groups of consecutive partitions holding about
    `MERGE_GROUP_ROWS` rows (existing kept rows + new winners, read with the partition filter
    pushed into the scans), and each partition is written once, as the file `Lake.publish`
    moves into place.
    """
    existing = lake.scan(table)
    key, part = list(table.key), table.partition_by
    assert part is not None
    existing_counts = (
        existing.group_by(part, "source_seq").agg(pl.len()).collect(engine="streaming")
    )
    per_file = _sums(existing_counts, "source_seq")
    if not batch:
        return None, {}, per_file, sum(per_file.values())
    lineage = list(versions.LINEAGE_ORDER)
    new = pl.concat(
        [
            pl.scan_parquet(path).with_columns(pl.lit(seq, pl.Int64).alias("source_seq"))
            for seq, s in batch
            for path in _staged_parts(s.valid_path)
        ]
    )
    new_counts_by_part = new.group_by(part, "source_seq").agg(pl.len()).collect(engine="streaming")
    new_counts = _sums(new_counts_by_part, "source_seq")
    losers = _superseded(existing, new, table)
    existing_losers = losers.filter(~pl.col("source_seq").is_in([seq for seq, _ in batch]))
    # Existing losers leave their partitions; new rows (winners and losers alike) touch theirs.
    touched = set(losers.get_column(part).to_list()) | set(
        new_counts_by_part.get_column(part).to_list()
    )
    rows_by_part = _sums(pl.concat([existing_counts, new_counts_by_part]), part)
    partitions: dict[PartitionValue, PartitionRows] = {}
    for group in _partition_groups(sorted(touched, key=partition_text), rows_by_part):
        # The range lets scans skip files and row groups by their statistics.
        in_group = pl.col(part).is_between(group[0], group[-1]) & pl.col(part).is_in(
            pl.Series(group, dtype=table.schema[part]).implode()
        )
        kept = (
            existing.filter(in_group)
            .join(existing_losers.lazy().select(lineage), on=lineage, how="anti")
            .collect()
        )
        arrived = (
            new.filter(in_group)
            .join(losers.lazy().select(lineage), on=lineage, how="anti")
            .select(kept.columns)
            .collect()
        )
        merged = pl.concat([kept, arrived]).partition_by(part, as_dict=True)
        del kept, arrived
        for value in group:
            rows = merged.pop((value,), None)
            if rows is None or rows.is_empty():
                partitions[value] = None
                continue
            # Written once, as the lake's file: publishing moves it into place.
            merged_file = scratch / "merged" / f"{partition_text(value)}.parquet"
            partitions[value] = write_partition_file(rows.sort(key), table, merged_file)
    dropped = dict(losers.group_by("source_seq").agg(pl.len()).iter_rows())
    counts = {
        seq: per_file.get(seq, 0) + new_counts.get(seq, 0) - dropped.get(seq, 0)
        for seq in per_file.keys() | new_counts.keys()
    }
    counts = {seq: n for seq, n in counts.items() if n}
    return TableChange(table, partitions), dropped, counts, sum(counts.values())


def _sums(counts: pl.DataFrame, by: str) -> dict[Any, int]:
    """`len` summed per value of `by` in a (partition, source_seq, len) count frame."""
    return dict(counts.group_by(by).agg(pl.col("len").sum()).iter_rows())


def _partition_groups(
    values: list[PartitionValue], rows: dict[Any, int]
) -> Iterator[list[PartitionValue]]:
    """Consecutive partitions packed into groups of at most `MERGE_GROUP_ROWS` rows (a bigger
    partition is a group of its own)."""
    group: list[PartitionValue] = []
    size = 0
    for value in values:
        n = rows.get(value, 0)
        if group and size + n > MERGE_GROUP_ROWS:
            yield group
            group, size = [], 0
        group.append(value)
        size += n
    if group:
        yield group


def _superseded(existing: pl.LazyFrame, new: pl.LazyFrame, table: CuratedTable) -> pl.DataFrame:
    """The versions (existing or new) that lose to a later one: source_seq, source_row and
    partition. Only rows whose key hash repeats are ranked, with `versions.superseded`."""
    key, part = list(table.key), table.partition_by
    assert part is not None
    key_hash = pl.struct(key).hash().alias("_key_hash")
    hashes = (
        pl.concat([existing.select(key_hash), new.select(key_hash)])
        .collect(engine="streaming")
        .get_column("_key_hash")
        .to_numpy()
    )
    ordered = np.sort(hashes)
    del hashes
    repeated = pl.Series(np.unique(ordered[1:][ordered[1:] == ordered[:-1]])).implode()
    del ordered
    narrow = versions.version_columns(table)
    candidates = (
        pl.concat([existing.select(narrow), new.select(narrow)])
        .filter(key_hash.is_in(repeated))
        .collect(engine="streaming")  # only the repeated keys' rows are ever held
    )
    return versions.superseded(candidates.lazy(), table).collect()


def _staged_parts(pattern: str | None) -> list[str]:
    """The staged Parquet files a `StagedFile` path names (a glob of parts, or one file), on
    local disk or object storage."""
    if pattern is None:
        return []
    if not objectstore.is_object_url(pattern):
        path = Path(pattern)
        return [str(p) for p in sorted(path.parent.glob(path.name))]
    fs, key = objectstore.open_root(pattern)
    return sorted(objectstore.to_url(fs, found) for found in fs.glob(key))


def _remove_staged(location: str) -> None:
    """Delete a staged folder (local) or every object under a staged prefix."""
    if not objectstore.is_object_url(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    fs, key = objectstore.open_root(location)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(key, recursive=True)


def _quarantine_change(
    lake: Lake, accepted: Iterable[StagedFile], scratch: Path
) -> TableChange | None:
    paths = [s.quarantine_path for s in accepted if s.quarantine_path]
    if not paths:
        return None
    new = pl.concat(
        [pl.scan_parquet(p) for path in paths for p in _staged_parts(path)], how="diagonal_relaxed"
    ).select(QUARANTINE.schema.names())
    sources = new.select(pl.col("source").unique()).collect().get_column("source").to_list()
    if not sources:
        return None
    # Streamed into each source's partition file: the existing rows, then the new ones.
    partitions: dict[PartitionValue, PartitionRows] = {
        source: write_partition_file(
            pl.concat(
                [
                    lake.scan(QUARANTINE).filter(pl.col("source") == source),
                    new.filter(pl.col("source") == source).cast(QUARANTINE.schema),
                ]
            ),
            QUARANTINE,
            scratch / f"{source}.parquet",
        )
        for source in sorted(sources)
    }
    return TableChange(QUARANTINE, partitions)


def _reconcile(
    entries: pl.DataFrame, superseded_now: dict[int, int], curated: dict[int, int]
) -> pl.DataFrame:
    """Update per-file curated/superseded counts and check that nothing is lost or doubled."""
    updated = ledger.with_row_counts(entries.lazy(), superseded_now, curated).collect()
    for rule, broken in ledger.unreconciled(updated.lazy()).items():
        bad = broken.collect()
        if not bad.is_empty():
            files = ", ".join(bad["source_file"].head(5).to_list())
            raise ReconciliationError(
                f"reconciliation failed ({rule}) for {files}; nothing was published"
            )
    return updated


# ---------------------------------------------------------------------------------------
# snapshots


@dataclass(frozen=True)
class SnapshotSummary:
    as_of_date: date | None
    customers: int
    actions: dict[str, int]
    published: bool = True
    shuffle_bytes: int = 0  # written between the shuffle and bucket tasks


def latest_activity_date(lake: Lake, settings: Settings) -> date | None:
    """The latest date with a row in a source's table (by its partition column)."""
    dates = [
        lake.scan(table).select(pl.col(table.partition_by).max()).collect().item()
        for table in source_tables(settings.catalog).values()
        if table.partition_by is not None
    ]
    present = [d for d in dates if d is not None]
    return max(present) if present else None


def snapshot_fingerprint(lake: Lake, settings: Settings, as_of: date) -> str:
    """What a snapshot depends on: the ingested files and every setting. Same → same tables."""
    import hashlib

    ledger = (
        lake.scan(INGEST_LEDGER)
        .select("source_seq", "sha256", "status")
        .sort("source_seq")
        .collect()
    )
    computed_by = settings.model_dump_json(exclude=set(Settings.EXECUTION_KEYS))
    payload = f"{as_of}|{computed_by}|{ledger.write_csv()}"
    return hashlib.sha256(payload.encode()).hexdigest()


def build_snapshots(
    settings: Settings,
    lake: Lake,
    run_id: str,
    as_of: date | None,
    force: bool = False,
    mapper: snapshots.Mapper[Any] = snapshots.in_order,
) -> SnapshotSummary:
    """Compute and publish the customer_* partitions for one as-of date. Call under the lock.

    The work runs in `settings.snapshot_buckets` customer-hash buckets, whose tasks `mapper`
    runs (in order here by default; a flow passes its task runner). A snapshot whose inputs
    have not changed since it was published is left as it is, so a run with nothing new
    changes no file.
    """
    as_of = as_of or latest_activity_date(lake, settings)
    if as_of is None:
        return SnapshotSummary(None, 0, {})
    fingerprint = snapshot_fingerprint(lake, settings, as_of)
    known = lake.state().get("snapshot_fingerprints")
    fingerprints: dict[str, str] = dict(known) if isinstance(known, dict) else {}
    if not force and fingerprints.get(as_of.isoformat()) == fingerprint:
        segments = lake.scan(CUSTOMER_SEGMENTS).filter(pl.col("as_of_date") == as_of).collect()
        actions = dict(segments.group_by("action").agg(pl.len()).sort("action").iter_rows())
        return SnapshotSummary(as_of, segments.height, actions, published=False)
    combined = snapshots.compute(snapshots.SnapshotJob(settings, lake, run_id, as_of), mapper)
    quality, profitability, segments = combined.quality, combined.profitability, combined.segments
    fingerprints[as_of.isoformat()] = fingerprint
    lake.publish(
        run_id,
        [
            TableChange(customer_quality_table(settings.catalog), {as_of: quality}),
            TableChange(CUSTOMER_PROFITABILITY, {as_of: profitability}),
            TableChange(CUSTOMER_SEGMENTS, {as_of: segments}),
        ],
        state={"snapshot_fingerprints": fingerprints},
    )
    faults.checkpoint("after_snapshot_publish")
    maintain_if_due(lake, settings)
    actions = dict(segments.group_by("action").agg(pl.len()).sort("action").iter_rows())
    return SnapshotSummary(as_of, segments.height, actions, shuffle_bytes=combined.shuffle_bytes)


def maintain_if_due(lake: Lake, settings: Settings) -> None:
    """Compact, checkpoint and vacuum the lake once enough publications have piled up small
    files (`storage.MAINTAIN_AFTER_FILES`); `servio maintain` does it on demand."""
    if lake.maintenance_due():
        lake.maintain(settings.vacuum_retention_hours)


def new_run_id() -> str:
    """A sortable, unique run id: UTC start time plus a random suffix."""
    import uuid

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


def run_steps(
    settings: Settings,
    lake: Lake,
    run_id: str,
    validator: Validator,
    wait_seconds: float = 0.0,
) -> tuple[int, IngestSummary]:
    """The main job's steps in this thread, without Prefect (files staged one after another):
    lock, recover, discover, stage, publish, snapshot. Returns (files seen, ingest summary)."""
    check_raw_root(settings)  # before any data is touched
    ingested_at = datetime.now(UTC)
    with lake.lock(run_id, wait_seconds):
        lake.recover()
        todo, duplicates = pending_files(settings, lake)
        staged = [stage_file(f, settings, lake, run_id, ingested_at, validator) for f in todo]
        ingest = publish_ingest(staged, duplicates, settings, lake, run_id)
        build_snapshots(settings, lake, run_id, None)
        lake.discard_staging(run_id)
    return len(todo) + len(duplicates), ingest


def quarantined_in_run(lake: Lake, run_id: str) -> pl.DataFrame:
    """The rows and files this run quarantined, in file and row order."""
    return (
        lake.scan(QUARANTINE)
        .filter(pl.col("run_id") == run_id)
        .select("source_file", "row_number", "reason_codes", "reason_detail")
        .sort("source_file", "row_number", nulls_last=False)
        .collect()
    )


def top_reasons(quarantined: pl.DataFrame, limit: int = 10) -> list[tuple[str, int]]:
    """The most frequent reason codes (a row with several reasons counts for each)."""
    codes = quarantined.select(pl.col("reason_codes").str.split(";").alias("code")).explode("code")
    counted = codes.group_by("code").agg(pl.len()).sort(["len", "code"], descending=[True, False])
    return [(code, int(n)) for code, n in counted.head(limit).iter_rows()]


def table_row_counts(lake: Lake, settings: Settings) -> dict[str, int]:
    return {
        name: lake.scan(table).select(pl.len()).collect().item()
        for name, table in curated_tables(settings.catalog).items()
    }


def as_dict(obj: object) -> dict[str, object]:
    return asdict(obj)  # type: ignore[call-overload]
