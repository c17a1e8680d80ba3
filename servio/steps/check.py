"""Stage, second step: `check_files` (once per source) checks the read parts of every file of a
source with the validator in as few batches as memory allows — Great Expectations' cost is
mostly fixed per call, so a batch of many files pays it once — then writes each file's curated
rows and quarantine rows as Parquet parts (paths, never frames, go on to the publish step).
Each file stays its own boundary (`steps.boundary`): a validator failure on a batch is tried
again file by file."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import polars as pl

from servio.raw.landing import LandedFile
from servio.schemas.raw import FAILURE_SCHEMA, SOURCE_ROW, RawContract
from servio.schemas.sources import SOURCES
from servio.schemas.tables import INGESTED
from servio.steps.boundary import STOPS, Step, at_boundary, record_range
from servio.steps.context import RunContext, rows_within
from servio.steps.errors import ReconciliationError, StagingError
from servio.steps.staging import TEXT_PREFIX, StagedFile, staged_path, write_stage
from servio.transforms import curate, standardise
from servio.transforms import quarantine as quarantine_rows
from servio.validation.rules import (
    batch_row_id,
    conflict_recipe,
    conflicts_in,
    file_of,
    record_of,
)

log = logging.getLogger("servio.steps.stage")  # the stage step's log (see steps.boundary)

# Fields checked by one call of the validator (rows × the contract's fields): the rows of
# many files (its fixed cost, ~1.5 s, is paid once per batch), bounded because GX holds a
# batch's columns while it checks them: checking the 1 M interactions of the 1M benchmark in
# one batch raised the peak RSS from 456 to 715 MiB, so 4 M interactions (13 fields) should
# add about 1 GB. Counted in rows alone, a batch held 4 M surveys (51 fields): the 100M
# benchmark's ingest went from 1.8 to 3.4 GB while they were checked (2.0 GB with batches of
# 1 M). At 1M and 10M each source is still checked in one batch.
VALIDATION_BATCH_FIELDS = 4_000_000 * 13


def check_files(ctx: RunContext, files: Sequence[StagedFile]) -> list[StagedFile]:
    """Validate the read files (`read_file`) source by source, in batches of up to
    `VALIDATION_BATCH_FIELDS` fields (many files, or a part of one big file), then write each
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
        step = Step("finding conflicting duplicates across the file")

        def prepare(staged: StagedFile = staged, step: Step = step) -> StagedFile:
            parts = ctx.lake.staged_parts(staged.checked_path)
            entry = _Checking(staged, [(p, _rows_of(p)) for p in parts])
            entry.conflicts = _file_conflicts(ctx, contract, parts)
            checking.append(entry)
            return staged

        outcome = at_boundary(ctx, staged.landed, step, prepare)
        if outcome is not staged:
            checking.append(_Checking(staged, [], outcome=outcome))
    for batch in _batches(checking, rows_within(VALIDATION_BATCH_FIELDS, len(contract.fields))):
        _check_batch(ctx, contract, batch)
    results = []
    for entry in checking:
        if entry.outcome is None:
            step = Step("building curated and quarantine rows")
            entry.outcome = at_boundary(
                ctx, entry.staged.landed, step, partial(_finish, ctx, contract, entry, step)
            )
        results.append(entry.outcome)
    return results


def _rows_of(part: str) -> int:
    return int(pl.scan_parquet(part).select(pl.len()).collect().item())


def _batches(checking: list[_Checking], batch_rows: int) -> Iterator[list[tuple[_Checking, str]]]:
    """Consecutive parts of the files, up to `batch_rows` rows a batch (at least one part)."""
    batch: list[tuple[_Checking, str]] = []
    rows = 0
    for entry in checking:
        for part, part_rows in entry.parts:
            if batch and rows + part_rows > batch_rows:
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
        except STOPS:
            raise
        except Exception:
            log.warning("validating %d files at once failed: trying each alone", len(entries))
    for entry in entries:
        step = Step(f"validating the records of {entry.staged.landed.relative_path}")
        mine = [(e, part) for e, part in batch if e is entry]

        def validate(
            entry: _Checking = entry, mine: list[tuple[_Checking, str]] = mine
        ) -> StagedFile:
            _validate(ctx, contract, mine, [entry])
            return entry.staged

        outcome = at_boundary(ctx, entry.staged.landed, step, validate)
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


def _finish(ctx: RunContext, contract: RawContract, entry: _Checking, step: Step) -> StagedFile:
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
            kept_path = ctx.validator.keep(entry.kept, staged_path(ctx, landed, "validation.json"))
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
        staged_path(ctx, landed, "valid-*.parquet"),
        staged_path(ctx, landed, "quarantine-*.parquet"),
        kept_path,
    )


def _finish_chunk(
    ctx: RunContext,
    checked: pl.DataFrame,
    part: int,
    contract: RawContract,
    landed: LandedFile,
    rule_failures: pl.DataFrame,
    step: Step,
) -> tuple[int, int]:
    """One checked part's curated and quarantine rows, written. (valid, quarantined)"""
    settings = ctx.settings
    text_columns = [c for c in checked.columns if c.startswith(TEXT_PREFIX)]
    raw = checked.select(
        SOURCE_ROW, *[pl.col(c).alias(c.removeprefix(TEXT_PREFIX)) for c in text_columns]
    )
    typed = checked.drop(text_columns)
    step(f"building curated and quarantine rows of records {record_range(raw)}")
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
    step(f"writing the staged rows of records {record_range(raw)}")
    write_stage(ctx, landed, f"valid-{part:05d}", by_partition)
    write_stage(ctx, landed, f"quarantine-{part:05d}", quarantine)
    return curated.height, quarantine.height


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
