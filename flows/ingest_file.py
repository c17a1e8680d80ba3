"""`ingest-file`: ingest every file pending in the raw zone when the run starts.

Requested by the watcher for a landed file (`servio.flows.dispatch`: at most one such run
waits to start, so a burst of files becomes a few runs), by the periodic catch-up of
`servio serve`, or by hand for one `path`. One run of the sequence: files staged outside the
lake lock, published under it, deciding against the ledger there — a file whose path and
content the ledger already holds is not ingested again, however many runs see it. When data
was added, it emits `servio.curated.updated` and asks for a snapshot run (debounced)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from servio.config import load_settings
from servio.flows.runners import threads
from servio.flows.tasks import PREFECT_TASKS, failure_documented, warn_unwritten
from servio.flows.watch import CURATED_UPDATED
from servio.schemas.tables import DEFERRED, DUPLICATE, INGESTED, REFUSED, REJECTED
from servio.steps import results as run_results
from servio.steps import sequence
from servio.steps.backfill import DEFAULT_WAIT_SECONDS
from servio.steps.context import RunContext
from servio.steps.summary import quarantined_in_run, top_reasons

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


def _announce(outcome: sequence.Outcome, run_id: str) -> None:
    from prefect.events import emit_event

    files = sorted(s.landed.relative_path for s in outcome.staged if s.rows_valid)
    sources = sorted({s.landed.source for s in outcome.staged if s.rows_valid})
    emit_event(
        event=CURATED_UPDATED,
        resource={"prefect.resource.id": f"servio.curated.{'+'.join(sources)}"},
        related=[
            {"prefect.resource.id": f"servio.raw.{path}", "prefect.resource.role": "source-file"}
            for path in files
        ],
        payload={"run_id": run_id, "files": files},
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"servio:{run_id}"),
    )


def _request_snapshot(config_path: str | None) -> None:
    from servio.flows.dispatch import SNAPSHOT, request_run

    try:
        request_run(
            SNAPSHOT,
            "snapshot latest",
            {"config_path": config_path},
            match=("as_of", "force", "config_path"),
        )
    except Exception as exc:  # not served (a manual run of the flow): the cron catches up
        get_run_logger().warning("no snapshot requested (%s): %s", SNAPSHOT, exc)


def _run_name() -> str:
    """`ingest <path>`, or the name the requester gave when it says more (the catch-up's
    `ingest <path> (+N)`: N more pending files this run takes)."""
    from prefect.runtime import flow_run

    name = f"ingest {flow_run.parameters.get('path', 'pending')}"
    requested = flow_run.name or ""
    return requested if requested == name or requested.startswith(f"{name} (") else name


@flow(name="ingest-file", log_prints=True, flow_run_name=_run_name, task_runner=threads())
def ingest_file(
    path: str = "pending",
    config_path: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    snapshot: bool = True,
) -> dict[str, str]:
    """Ingest every pending file of the raw zone; returns each file's outcome: ingested,
    duplicate, already_ingested, refused or deferred (`file_outcome`).

    Args:
        path: The landed file that asked for this run, relative to the raw root (the run's
            name); the run ingests every file pending when it starts, this one included.
        config_path: servio.toml of the raw zone and the lake (default: ./servio.toml).
        wait_seconds: Seconds to wait for another writer to release the lake lock.
        snapshot: Ask for a (debounced) snapshot run when data was added.
    """
    logger = get_run_logger()
    started, started_at = time.monotonic(), datetime.now(UTC)
    logger.info("ingest: every pending file (asked for %s)", path)
    settings = load_settings(config_path or None)
    ctx = RunContext.start(settings, "ingest")
    plan = sequence.Plan(
        ingest=sequence.ALL, snapshot=None, data_docs=False, wait_seconds=wait_seconds
    )
    timed = sequence.Timed(PREFECT_TASKS)
    # One run-results document per run that changed the lake, by the builder `servio run` uses.
    record = run_results.RunRecord(run_results.SERVE_INGEST, ctx.run_id, settings, started_at)
    with failure_documented(record, timed):
        outcome = sequence.run(ctx, plan, timed)
    record.add(outcome, timed.seconds)
    warn_unwritten(run_results.flow_run_done(record))
    files = [*outcome.discovered.todo, *outcome.discovered.duplicates]
    if not files:
        logger.info("nothing pending (asked for %s): the ledger holds every landed file", path)
        return {}
    results = {f.relative_path: file_outcome(outcome, f.relative_path) for f in files}
    rows = []
    for staged in outcome.staged:
        rel = staged.landed.relative_path
        logger.info(
            "%s: %s — %d rows read, %d valid, %d quarantined%s",
            rel,
            results[rel],
            staged.rows_read,
            staged.rows_valid,
            staged.rows_quarantined,
            f" ({staged.reason})" if staged.reason else "",
        )
        rows.append(
            {
                "file": rel,
                "outcome": results[rel],
                "status": staged.status,
                "rows_read": staged.rows_read,
                "rows_valid": staged.rows_valid,
                "rows_quarantined": staged.rows_quarantined,
                "reason": staged.reason or "",
            }
        )
    for dup in outcome.discovered.duplicates:
        logger.info(
            "%s: %s (same content as a file already ingested)",
            dup.relative_path,
            results[dup.relative_path],
        )
        rows.append({"file": dup.relative_path, "outcome": results[dup.relative_path]})
    if outcome.locked:
        for code, n in top_reasons(quarantined_in_run(ctx.lake, ctx.run_id)):
            logger.info("quarantined for %s: %d rows", code, n)
    steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timed.seconds.items())
    logger.info("%d file(s) in %.1fs (%s)", len(files), time.monotonic() - started, steps)
    create_table_artifact(
        key="servio-ingest",  # one key: the UI keeps its history, each run's table in the run
        table=rows,
        description=f"servio ingest, run {ctx.run_id}",
    )
    if any(
        s.rows_valid and results[s.landed.relative_path] == INGESTED_NOW for s in outcome.staged
    ):
        _announce(outcome, ctx.run_id)
        if snapshot:
            _request_snapshot(config_path)
    return results
