"""What `servio status` shows, read from the raw zone and the lake (no server, no lock):
per source the files waiting, the last ingest and its age against the freshness thresholds
(like dbt's `source freshness`), and the snapshot dates whose inputs changed since they
were published."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl

from servio.config import Settings
from servio.lake import Lake
from servio.schemas.sources import SOURCE_NAMES
from servio.schemas.tables import INGEST_LEDGER, INGESTED
from servio.steps.discover import unsettled
from servio.steps.snapshot import FINGERPRINTS, is_done, latest_activity_date

FRESH, WARN, ERROR = "fresh", "warn", "error"


@dataclass(frozen=True)
class SourceStatus:
    source: str
    pending: int
    last_ingest: datetime | None  # the latest file ingested (with rows), UTC
    age_hours: float | None
    freshness: str  # fresh, warn, error (never ingested: error)


@dataclass
class Status:
    sources: list[SourceStatus]
    stale_snapshots: list[date] = field(default_factory=list)  # inputs changed since
    missing_snapshot: date | None = None  # the latest date with data, never snapshotted

    @property
    def worst(self) -> str:
        levels = [s.freshness for s in self.sources]
        return ERROR if ERROR in levels else WARN if WARN in levels else FRESH


def freshness(age_hours: float | None, settings: Settings) -> str:
    if age_hours is None or age_hours > settings.freshness_error_hours:
        return ERROR
    return WARN if age_hours > settings.freshness_warn_hours else FRESH


def status(settings: Settings, now: datetime) -> Status:
    lake = Lake(settings.curated_root)
    waiting = unsettled(settings, lake)
    ledger = lake.scan(INGEST_LEDGER).filter(pl.col("status") == INGESTED).collect()
    last = dict(ledger.group_by("source").agg(pl.col("ingested_at").max()).iter_rows())
    sources = []
    for source in SOURCE_NAMES:
        at = last.get(source)
        age = (now - at).total_seconds() / 3600 if at is not None else None
        pending = sum(1 for f in waiting if f.source == source)
        sources.append(SourceStatus(source, pending, at, age, freshness(age, settings)))
    known = lake.state().get(FINGERPRINTS)
    dates = sorted(date.fromisoformat(d) for d in known) if isinstance(known, dict) else []
    stale = [d for d in dates if not is_done(settings, lake, d)]
    latest = latest_activity_date(lake, settings)
    missing = latest if latest is not None and latest not in dates else None
    return Status(sources, stale, missing)
