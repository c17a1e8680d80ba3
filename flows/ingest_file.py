"""`ingest-file`: ingest one landed file, triggered by its `servio.raw.file.landed` event.

One run of the sequence for the file the event names: staged outside the lake lock (ingests
of different files overlap), published under it, deciding against the ledger there — a file
whose path and content the ledger already holds is not ingested again, whatever the number of
events."""

from __future__ import annotations

import uuid

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from servio.config import load_settings
from servio.flows.runners import threads
from servio.flows.tasks import PREFECT_TASKS
from servio.flows.watch import CURATED_UPDATED
from servio.raw.landing import LandedFile
from servio.schemas.tables import DEFERRED, DUPLICATE, INGESTED, REFUSED, REJECTED
from servio.steps import sequence
from servio.steps.backfill import DEFAULT_WAIT_SECONDS
from servio.steps.context import RunContext
from servio.steps.stage import StagedFile

ALREADY_INGESTED, INGESTED_NOW, DUPLICATE_CONTENT = "already_ingested", "ingested", "duplicate"


def file_outcome(outcome: sequence.Outcome, relative_path: str) -> str:
    """ingested, duplicate (its content came under another name), already_ingested, or
    refused / deferred (not read: its location, or an I/O failure; tried again later)."""
    staged = next((s for s in outcome.staged if s.landed.relative_path == relative_path), None)
    if staged is not None and staged.status in (REFUSED, DEFERRED):
        return staged.status  # recorded with its reason; the file stays eligible
    recorded = outcome.ingest.recorded.get(relative_path) if outcome.ingest else None
    if recorded in (INGESTED, REJECTED):
        return INGESTED_NOW
    if recorded == DUPLICATE:
        return DUPLICATE_CONTENT
    return ALREADY_INGESTED


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


@flow(name="ingest-file", log_prints=True, flow_run_name="ingest {path}", task_runner=threads())
def ingest_file(
    path: str,
    source: str | None = None,
    sha256: str | None = None,
    config_path: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> str:
    """Ingest one file of the raw zone (path relative to the raw root, or absolute inside it).

    Returns ingested, duplicate, already_ingested, refused or deferred (`file_outcome`).
    """
    logger = get_run_logger()
    settings = load_settings(config_path)
    ctx = RunContext.start(settings, "ingest")
    plan = sequence.Plan(ingest=(path,), snapshot=None, data_docs=False, wait_seconds=wait_seconds)
    outcome = sequence.run(ctx, plan, PREFECT_TASKS)
    found = [*outcome.discovered.todo, *outcome.discovered.duplicates]
    if not found:
        logger.info("%s is already in the ledger: nothing to do", path)
        return ALREADY_INGESTED
    landed = found[0]
    if sha256 and sha256 != landed.sha256:
        logger.warning(
            "%s changed since its event (%s…, now %s…); ingested its current content",
            landed.relative_path,
            sha256[:12],
            (landed.sha256 or "unreadable")[:12],
        )
    if source and source != landed.source:
        logger.warning("event says source %s, the folder says %s", source, landed.source)
    result = file_outcome(outcome, landed.relative_path)
    logger.info("%s: %s", landed.relative_path, result)
    for staged in outcome.staged:
        create_table_artifact(
            key="servio-ingest-file",
            table=[
                {
                    "file": landed.relative_path,
                    "outcome": result,
                    "status": staged.status,
                    "rows_read": staged.rows_read,
                    "rows_valid": staged.rows_valid,
                    "rows_quarantined": staged.rows_quarantined,
                    "reason": staged.reason or "",
                }
            ],
            description=f"servio ingest of {landed.relative_path}",
        )
        if result == INGESTED_NOW and staged.rows_valid:
            _announce(landed, staged, ctx.run_id)
    return result
