"""The three deployments servio runs on a Prefect server: `ingest-file` (requested by the
watcher and the catch-up, at most `serve_ingest_runs` at once, more requests queued by
Prefect), `build-snapshot` (requested by ingest runs that added data — one at a time, one
queued — and a daily cron in the source time zone) and `backfill` (run by hand).

`build_deployments` gives them to `prefect.serve` (`servio serve`); `prefect.yaml` at the
top of the repository declares the same ones for a process work pool."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from servio.config import Settings
from servio.flows.backfill import backfill
from servio.flows.dispatch import (  # noqa: F401  (names of the deployments, re-exported)
    BACKFILL,
    BACKFILL_DEPLOYMENT,
    INGEST,
    INGEST_DEPLOYMENT,
    SNAPSHOT,
    SNAPSHOT_DEPLOYMENT,
)
from servio.flows.ingest_file import ingest_file
from servio.flows.snapshot import build_snapshot

DAILY_SNAPSHOT_CRON = "0 2 * * *"


def queue(limit: int) -> ConcurrencyLimitConfig:
    """At most `limit` runs at once; the others wait (AwaitingConcurrencySlot), none dropped."""
    return ConcurrencyLimitConfig(limit=limit, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def build_deployments(
    settings: Settings, config_path: str | None = None, snapshot_cron: str = DAILY_SNAPSHOT_CRON
) -> list[Any]:
    """RunnerDeployments for `prefect.serve`; the config path travels as a parameter."""
    common = {"config_path": config_path}
    ingest = ingest_file.to_deployment(
        name=INGEST_DEPLOYMENT,
        description="Ingest every pending file of the raw zone (requested per landed file).",
        parameters=common,
        concurrency_limit=queue(settings.serve_ingest_runs),
        tags=["servio"],
    )
    snapshot = build_snapshot.to_deployment(
        name=SNAPSHOT_DEPLOYMENT,
        description="Publish the customer_* snapshot (latest date unless as_of is given), the "
        "Data Docs and the HTML report.",
        parameters=common,
        schedules=[Cron(snapshot_cron, timezone=settings.source_timezone)],
        concurrency_limit=queue(1),
        tags=["servio"],
    )
    backfill_deployment = backfill.to_deployment(
        name=BACKFILL_DEPLOYMENT,
        description="Recompute snapshots from start to end (YYYY-MM-DD), bounded, idempotent.",
        parameters=common,
        tags=["servio"],
    )
    return [ingest, snapshot, backfill_deployment]
