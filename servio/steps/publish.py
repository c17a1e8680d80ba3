"""Step 3, publish an ingest: the staged files of this run merged into their curated tables,
their quarantine rows and their ledger rows, checked (nothing lost or doubled) and published
as one publication. Runs under the lake lock, so it decides against the ledger again: a file
another run published meanwhile is skipped (same path and content) or recorded as a
duplicate (same content, another name).

File numbering: every ledger row gets the next `source_seq` in the order files are
published; within one publication, in path order (staged files, then known content). A
later `source_seq` wins a tie of version times, whichever entry point ingests.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from servio import faults
from servio.lake import TableChange
from servio.raw.landing import LandedFile
from servio.schemas.sources import SOURCES
from servio.schemas.tables import (
    DEFERRED,
    DUPLICATE,
    INGEST_LEDGER,
    INGESTED,
    QUARANTINE,
    REFUSED,
    REJECTED,
)
from servio.steps.context import RunContext
from servio.steps.errors import ReconciliationError
from servio.steps.maintenance import maintain_if_due
from servio.steps.merge import merge_source, quarantine_change
from servio.steps.staging import StagedFile
from servio.transforms import ledger
from servio.transforms.ledger import is_remembered, remembers


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
    # The ledger status each file got in this publication (files already known: none).
    recorded: dict[str, str] = field(default_factory=dict)


def publish_ingest(
    ctx: RunContext, staged: list[StagedFile], duplicates: list[LandedFile]
) -> IngestSummary:
    """Merge staged files into the curated tables, quarantine and ledger as one publication.
    Call under the lake lock."""
    lake, run_id, now = ctx.lake, ctx.run_id, ctx.now()
    existing = lake.scan(INGEST_LEDGER).collect()
    new_entries, accepted = _ledger_entries(existing, staged, duplicates, run_id, now)

    changes: list[TableChange] = []
    superseded_now: dict[int, int] = {}
    curated_counts: dict[int, int] = {}
    table_rows: dict[str, int] = {}
    for name, source in SOURCES.items():
        table = source.table(ctx.settings.catalog)
        batch = [(seq, s) for seq, s in accepted if s.landed.source == name and s.valid_path]
        scratch = lake.scratch_dir(run_id) / "merge" / table.name
        change, dropped, counts, total = merge_source(lake, table, batch, scratch)
        if change is not None:
            changes.append(change)
        superseded_now.update(dropped)
        curated_counts.update(counts)
        table_rows[table.name] = total

    quarantined = quarantine_change(
        lake, [s for _, s in accepted], lake.scratch_dir(run_id) / "merge" / QUARANTINE.name
    )
    if quarantined is not None:
        changes.append(quarantined)

    all_entries = (
        pl.concat([existing, pl.DataFrame(new_entries, schema=INGEST_LEDGER.schema)])
        if new_entries
        else existing
    )
    all_entries = _reconcile(all_entries, superseded_now, curated_counts)
    changes.append(TableChange(INGEST_LEDGER, {None: all_entries}))
    if accepted or new_entries:
        lake.publish(run_id, changes)
        faults.checkpoint("after_ingest_publish")
        maintain_if_due(ctx)
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
        recorded={str(e["source_file"]): str(e["status"]) for e in new_entries},
    )


def records_anything(ctx: RunContext, staged: list[StagedFile]) -> bool:
    """Whether publishing these staged files would add a ledger row (`_ledger_entries`, as
    `publish_ingest` decides): False for files left for later whose unchanged failure the
    ledger already holds."""
    existing = ctx.lake.scan(INGEST_LEDGER).collect()
    new_entries, _ = _ledger_entries(existing, staged, [], ctx.run_id, ctx.now())
    return bool(new_entries)


def _ledger_entries(
    ledger: pl.DataFrame,
    staged: list[StagedFile],
    duplicates: list[LandedFile],
    run_id: str,
    now: datetime,
) -> tuple[list[dict[str, object]], list[tuple[int, StagedFile]]]:
    """This batch's new ledger rows, and the staged files (with their `source_seq`) whose rows
    are published.

    A content verdict is remembered by hash: known content is a duplicate, and a file whose
    path and content the ledger holds is skipped (staging runs outside the lock). A file refused
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
        if (landed.relative_path, landed.sha256) in known_paths:
            continue  # another run published this very file while this one staged it
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
