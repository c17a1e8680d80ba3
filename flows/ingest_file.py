"""`ingest-file`: ingest one landed file, triggered by its `servio.raw.file.landed` event.

Staging runs outside the lake lock (ingests of different files overlap); publishing takes
the lock and waits for another publisher. The ledger decides: a file whose path and content
it already holds is not ingested again, whatever the number of events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from servio.config import Settings, load_settings
from servio.flows.runners import transient_error
from servio.flows.snapshot import DEFAULT_WAIT_SECONDS, new_run_id, writing
from servio.landing import LandedFile
from servio.pipeline import (
    DEFERRED,
    REFUSED,
    StagedFile,
    publish_ingest,
    remembered_files,
    stage_file,
)
from servio.storage import Lake
from servio.validation.gx import GxValidator
from servio.watch import CURATED_UPDATED, landed_file

ALREADY_INGESTED, INGESTED_NOW, DUPLICATE_CONTENT = "already_ingested", "ingested", "duplicate"


def _ledger_state(lake: Lake, landed: LandedFile) -> str | None:
    """already_ingested (this path, this content), duplicate (content under another name).
    Only verdicts about the content count: a refused or deferred file is looked at again."""
    ledger = remembered_files(lake)
    same = ledger.filter(pl.col("sha256") == landed.sha256)
    if same.filter(pl.col("source_file") == landed.relative_path).height:
        return ALREADY_INGESTED
    return DUPLICATE_CONTENT if same.height else None


@task(
    name="describe-file",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=transient_error,
)
def describe(settings: Settings, path: str) -> LandedFile:
    return landed_file(settings.raw_root, path)


@task(
    name="stage-file",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=transient_error,
    task_run_name="stage {landed.relative_path}",
)
def stage(landed: LandedFile, settings: Settings, lake: Lake, run_id: str) -> StagedFile:
    lake.claim_staging(run_id)  # a concurrent publisher's recover() keeps this folder
    return stage_file(landed, settings, lake, run_id, datetime.now(UTC), GxValidator())


@task(name="publish-file", cache_policy=NO_CACHE)
def publish(
    landed: LandedFile,
    staged: StagedFile | None,
    settings: Settings,
    lake: Lake,
    run_id: str,
    wait_seconds: float,
) -> str:
    with writing(lake, run_id, wait_seconds):
        # Decide again under the lock: another run may have published this content meanwhile.
        state = _ledger_state(lake, landed)
        if state == ALREADY_INGESTED:
            return ALREADY_INGESTED
        if staged is None or state == DUPLICATE_CONTENT:
            summary = publish_ingest([], [landed], settings, lake, run_id)
        else:
            summary = publish_ingest([staged], [], settings, lake, run_id)
    if staged is not None and staged.status in (REFUSED, DEFERRED):
        return staged.status  # recorded with its reason; the file stays eligible
    return INGESTED_NOW if summary.files_ingested + summary.files_rejected else DUPLICATE_CONTENT


def _announce(landed: LandedFile, staged: StagedFile, run_id: str) -> None:
    from prefect.events import emit_event

    emit_event(
        event=CURATED_UPDATED,
        resource={"prefect.resource.id": f"servio.curated.{landed.source}"},
        related=[
            {
                "prefect.resource.id": f"servio.raw.{landed.relative_path}",
                "prefect.resource.role": "source-file",
            }
        ],
        payload={"run_id": run_id, "path": landed.relative_path, "rows_valid": staged.rows_valid},
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"servio:{run_id}"),
    )


@flow(name="ingest-file", log_prints=True, flow_run_name="ingest {path}")
def ingest_file(
    path: str,
    source: str | None = None,
    sha256: str | None = None,
    config_path: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> str:
    """Ingest one file of the raw zone (path relative to the raw root, or absolute inside it).

    Returns ingested, duplicate (its content came under another name), already_ingested, or
    refused / deferred (not read: its location, or an I/O failure; tried again later).
    """
    logger = get_run_logger()
    settings = load_settings(config_path)
    lake = Lake(settings.curated_root)
    landed = describe(settings, path)
    if sha256 and sha256 != landed.sha256:
        logger.warning(
            "%s changed since its event (%s…, now %s…); ingesting its current content",
            landed.relative_path,
            sha256[:12],
            (landed.sha256 or "unreadable")[:12],
        )
    if source and source != landed.source:
        logger.warning("event says source %s, the folder says %s", source, landed.source)
    state = _ledger_state(lake, landed)
    if state == ALREADY_INGESTED:
        logger.info("%s is already in the ledger: nothing to do", landed.relative_path)
        return ALREADY_INGESTED
    run_id = new_run_id("ingest")
    staged = stage(landed, settings, lake, run_id) if state is None else None
    outcome = publish(landed, staged, settings, lake, run_id, wait_seconds)
    logger.info("%s: %s", landed.relative_path, outcome)
    if staged is not None:
        create_table_artifact(
            key="servio-ingest-file",
            table=[
                {
                    "file": landed.relative_path,
                    "outcome": outcome,
                    "status": staged.status,
                    "rows_read": staged.rows_read,
                    "rows_valid": staged.rows_valid,
                    "rows_quarantined": staged.rows_quarantined,
                    "reason": staged.reason or "",
                }
            ],
            description=f"servio ingest of {landed.relative_path}",
        )
    if outcome == INGESTED_NOW and staged is not None and staged.rows_valid:
        _announce(landed, staged, run_id)
    return outcome
