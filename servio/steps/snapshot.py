"""Step 4, the snapshot of one as-of date: the customer_* partitions and the SPEC §6 tables
(customer_value, value_model, quality_drivers, service_levels) computed from the curated
tables (in customer-hash buckets, `buckets`) and published in one publication — unless a
snapshot with the same input fingerprint (the ledger and every setting that computes) is
already published."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

import polars as pl

from servio import faults
from servio.config import Settings
from servio.lake import Lake, TableChange
from servio.schemas.snapshot_tables import CUSTOMER_SEGMENTS, VALUE_MODEL
from servio.schemas.sources import source_tables
from servio.schemas.tables import INGEST_LEDGER
from servio.steps import buckets
from servio.steps.context import RunContext
from servio.steps.maintenance import maintain_if_due

FINGERPRINTS = "snapshot_fingerprints"  # the lake state's key: as-of date → fingerprint


@dataclass(frozen=True)
class SnapshotSummary:
    as_of_date: date | None
    customers: int
    actions: dict[str, int]
    published: bool = True
    shuffle_bytes: int = 0  # written between the shuffle and bucket tasks
    # The value models that did not converge (their columns are null): for the run summary.
    warnings: tuple[str, ...] = ()


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
    ledger = (
        lake.scan(INGEST_LEDGER)
        .select("source_seq", "sha256", "status")
        .sort("source_seq")
        .collect()
    )
    payload = f"{as_of}|{settings.computed_json()}|{ledger.write_csv()}"
    return hashlib.sha256(payload.encode()).hexdigest()


def build_snapshot(ctx: RunContext, as_of: date | None, force: bool = False) -> SnapshotSummary:
    """Compute and publish the customer_* partitions for one as-of date (None: the latest
    date with activity). Call under the lock.

    The work runs in `settings.snapshot_buckets` customer-hash buckets, whose tasks
    `ctx.mapper` runs (in order by default; a flow passes its task runner). A snapshot whose
    inputs have not changed since it was published is left as it is (unless `force`), so a
    run with nothing new changes no file.
    """
    settings, lake, run_id = ctx.settings, ctx.lake, ctx.run_id
    as_of = as_of or latest_activity_date(lake, settings)
    if as_of is None:
        return SnapshotSummary(None, 0, {})
    fingerprint = snapshot_fingerprint(lake, settings, as_of)
    known = lake.state().get(FINGERPRINTS)
    fingerprints: dict[str, str] = dict(known) if isinstance(known, dict) else {}
    if not force and fingerprints.get(as_of.isoformat()) == fingerprint:
        return published_summary(lake, as_of)
    combined = buckets.compute(buckets.SnapshotJob(settings, lake, run_id, as_of), ctx.mapper)
    tables = buckets.snapshot_tables(settings)
    fingerprints[as_of.isoformat()] = fingerprint
    lake.publish(
        run_id,
        [TableChange(tables[name], {as_of: path}) for name, path in combined.files.items()],
        state={FINGERPRINTS: fingerprints},
    )
    faults.checkpoint("after_snapshot_publish")
    maintain_if_due(ctx)
    return SnapshotSummary(
        as_of,
        combined.customers,
        combined.actions,
        shuffle_bytes=combined.shuffle_bytes,
        warnings=combined.warnings,
    )


def published_model_warnings(lake: Lake, as_of: date) -> tuple[str, ...]:
    """The published snapshot's value models that did not converge, read from value_model
    (a run that leaves an unchanged snapshot as it is still says so)."""
    unconverged = (
        lake.scan(VALUE_MODEL)
        .filter(pl.col("as_of_date") == as_of, ~pl.col("converged"))
        .select("model", "n_customers")
        .sort("model")
        .collect()
    )
    return tuple(
        f"value model {model} of the snapshot as of {as_of} did not converge ({n} customers); "
        "the customer_value columns it computes are null"
        for model, n in unconverged.iter_rows()
    )


def published_summary(lake: Lake, as_of: date) -> SnapshotSummary:
    """The snapshot of `as_of` as published (customers per action, value models that did not
    converge), left as it is."""
    segments = lake.scan(CUSTOMER_SEGMENTS).filter(pl.col("as_of_date") == as_of)
    counts = segments.group_by("action").agg(pl.len()).sort("action").collect()
    actions = dict(counts.iter_rows())
    warnings = published_model_warnings(lake, as_of)
    return SnapshotSummary(
        as_of, sum(actions.values()), actions, published=False, warnings=warnings
    )


def is_done(settings: Settings, lake: Lake, as_of: date) -> bool:
    """The published snapshot for `as_of` was computed from exactly today's inputs."""
    known = lake.state().get(FINGERPRINTS)
    published = known.get(as_of.isoformat()) if isinstance(known, dict) else None
    return published == snapshot_fingerprint(lake, settings, as_of)
