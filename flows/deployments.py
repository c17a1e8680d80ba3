"""The three deployments `servio serve` registers on a Prefect server: `ingest-file`
(on `servio.raw.file.landed`), `build-snapshot` (on `servio.curated.updated` and a daily
cron in the source time zone) and `backfill` (run by hand with start/end)."""

from __future__ import annotations

from typing import Any

from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from servio.config import Settings
from servio.flows.backfill import backfill
from servio.flows.ingest_file import ingest_file
from servio.flows.snapshot import build_snapshot
from servio.flows.watch import CURATED_UPDATED, FILE_LANDED

INGEST_DEPLOYMENT = "servio-ingest"
SNAPSHOT_DEPLOYMENT = "servio-snapshot"
BACKFILL_DEPLOYMENT = "servio-backfill"
DAILY_SNAPSHOT_CRON = "0 2 * * *"


def build_deployments(
    settings: Settings, config_path: str | None = None, snapshot_cron: str = DAILY_SNAPSHOT_CRON
) -> list[Any]:
    """RunnerDeployments for `prefect.serve`; the config path travels as a parameter."""
    common = {"config_path": config_path}
    ingest = ingest_file.to_deployment(
        name=INGEST_DEPLOYMENT,
        description="Ingest one landed file (path, source, sha256 from the event).",
        parameters=common,
        triggers=[
            DeploymentEventTrigger(
                name="servio file landed",
                expect={FILE_LANDED},
                match={"prefect.resource.id": "servio.raw.*"},
                parameters={
                    "path": "{{ event.payload.path }}",
                    "source": "{{ event.payload.source }}",
                    "sha256": "{{ event.payload.sha256 }}",
                },
            )
        ],
        tags=["servio"],
    )
    snapshot = build_snapshot.to_deployment(
        name=SNAPSHOT_DEPLOYMENT,
        description="Publish the customer_* snapshot (latest date unless as_of is given).",
        parameters=common,
        schedules=[Cron(snapshot_cron, timezone=settings.source_timezone)],
        triggers=[
            DeploymentEventTrigger(
                name="servio curated updated",
                expect={CURATED_UPDATED},
                match={"prefect.resource.id": "servio.curated.*"},
            )
        ],
        tags=["servio"],
    )
    backfill_deployment = backfill.to_deployment(
        name=BACKFILL_DEPLOYMENT,
        description="Recompute snapshots from start to end (YYYY-MM-DD), bounded, idempotent.",
        parameters=common,
        tags=["servio"],
    )
    return [ingest, snapshot, backfill_deployment]
