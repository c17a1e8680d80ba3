"""`build-snapshot`: publish the customer_* partitions for one as-of date, and render the Data
Docs of the files ingested since. Triggered by `servio.curated.updated`, by the daily cron,
and by backfills."""

from __future__ import annotations

from datetime import date

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from servio.config import load_settings
from servio.flows.runners import task_mapper, threads
from servio.flows.tasks import PREFECT_TASKS
from servio.steps import sequence
from servio.steps.backfill import DEFAULT_WAIT_SECONDS
from servio.steps.context import RunContext


@flow(name="build-snapshot", log_prints=True, task_runner=threads())
def build_snapshot(
    as_of: date | None = None,
    force: bool = False,
    config_path: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> dict[str, object]:
    """Publish the snapshot for `as_of` (default: the latest date in the data)."""
    settings = load_settings(config_path)
    # The bucket tasks go to the flow's task runner (threads, or a Dask cluster).
    ctx = RunContext.start(settings, "snapshot", mapper=task_mapper)
    plan = sequence.Plan(
        ingest=None,
        snapshot=as_of or sequence.LATEST,
        force_snapshot=force,
        wait_seconds=wait_seconds,
    )
    outcome = sequence.run(ctx, plan, PREFECT_TASKS)
    summary = outcome.snapshot
    assert summary is not None
    lines = [
        f"# snapshot as of {summary.as_of_date}",
        f"- {'published' if summary.published else 'unchanged (inputs identical)'}",
        f"- customers: {summary.customers}",
        *(f"  - {action}: {n}" for action, n in summary.actions.items()),
        *(f"- warning: {warning}" for warning in (*summary.warnings, *outcome.warnings)),
    ]
    create_markdown_artifact(key="servio-snapshot", markdown="\n".join(lines))
    return {
        "as_of_date": summary.as_of_date.isoformat() if summary.as_of_date else None,
        "published": summary.published,
        "customers": summary.customers,
    }
