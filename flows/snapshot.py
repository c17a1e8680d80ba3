"""`build-snapshot`: publish the customer_* partitions for one as-of date, render the Data
Docs of the files ingested since, and draw the HTML report; the report and the Data Docs are
linked as artifacts. Requested (debounced) by ingest runs that added data, run by the daily
cron, and by backfills."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from servio.config import load_settings
from servio.flows.runners import task_mapper, threads
from servio.flows.tasks import PREFECT_TASKS, failure_documented, warn_unwritten
from servio.steps import results as run_results
from servio.steps import sequence
from servio.steps.backfill import DEFAULT_WAIT_SECONDS, with_computing_settings
from servio.steps.context import RunContext
from servio.steps.snapshot import latest_activity_date


def _run_name() -> str:
    from prefect.runtime import flow_run

    as_of = flow_run.parameters.get("as_of")
    return f"snapshot {as_of or 'latest'}"


def _rename(name: str) -> None:
    """A run asked for the latest date is named after the date it computes."""
    from prefect import get_client
    from prefect.runtime import flow_run

    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, name=name)
    except Exception:  # a name is worth no failed run
        get_run_logger().debug("could not rename the run", exc_info=True)


@flow(name="build-snapshot", log_prints=True, flow_run_name=_run_name, task_runner=threads())
def build_snapshot(
    as_of: date | None = None,
    force: bool = False,
    config_path: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    report: bool = True,
    computing: dict[str, Any] | None = None,
) -> dict[str, object]:
    """Publish the snapshot for `as_of` (default: the latest date in the data), render the
    Data Docs, draw the HTML report.

    Args:
        as_of: As-of date YYYY-MM-DD (default: the latest date with data).
        force: Recompute even when its inputs (the ledger, the settings) are unchanged.
        config_path: servio.toml of the lake (default: ./servio.toml).
        wait_seconds: Seconds to wait for another writer to release the lake lock.
        report: Draw the HTML report when the snapshot changed.
        computing: Settings the numbers depend on, sent by `servio backfill`: they replace
            the server's; the roots, the item catalog and how the work runs stay the server's.
    """
    logger = get_run_logger()
    started, started_at = time.monotonic(), datetime.now(UTC)
    settings = with_computing_settings(load_settings(config_path or None), computing)
    # The bucket tasks go to the flow's task runner (threads, or a Dask cluster).
    ctx = RunContext.start(settings, "snapshot", mapper=task_mapper)
    # One run-results document per run, by the builder `servio run` uses.
    record = run_results.RunRecord(run_results.SERVE_SNAPSHOT, ctx.run_id, settings, started_at)
    if as_of is None:
        latest = latest_activity_date(ctx.lake, settings)
        if latest is not None:
            _rename(f"snapshot {latest}")
    plan = sequence.Plan(
        ingest=None,
        snapshot=as_of or sequence.LATEST,
        force_snapshot=force,
        wait_seconds=wait_seconds,
    )
    timed = sequence.Timed(PREFECT_TASKS)
    with failure_documented(record, timed):
        outcome = sequence.run(ctx, plan, timed)
    summary = outcome.snapshot
    assert summary is not None
    report_path: str | None = None
    warnings = list(outcome.warnings)
    if report and summary.as_of_date is not None and summary.customers:
        report_path = _report(ctx, summary.as_of_date, summary.published, warnings)
    record.add(outcome, timed.seconds)
    record.warnings, record.report_path = list(warnings), report_path
    warn_unwritten(run_results.flow_run_done(record))
    if outcome.data_docs_path is not None:
        create_link_artifact(
            key="servio-data-docs",
            link=Path(outcome.data_docs_path).resolve().as_uri(),
            link_text="Great Expectations Data Docs",
            description="Validation results of every ingested file",
        )
    day = summary.as_of_date.isoformat() if summary.as_of_date else "none"
    lines = [
        f"# snapshot as of {day}",
        f"- {'published' if summary.published else 'unchanged (inputs identical)'}",
        f"- customers: {summary.customers}",
        *(f"  - {action}: {n}" for action, n in summary.actions.items()),
        *([f"- [HTML report]({Path(report_path).resolve().as_uri()})"] if report_path else []),
        *(
            [f"- [Data Docs]({Path(outcome.data_docs_path).resolve().as_uri()})"]
            if outcome.data_docs_path
            else []
        ),
        *(f"- warning: {warning}" for warning in (*summary.warnings, *warnings)),
    ]
    create_markdown_artifact(key=f"servio-snapshot-{day}", markdown="\n".join(lines))
    steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timed.seconds.items())
    logger.info(
        "snapshot %s: %s, %d customers, in %.1fs (%s)",
        day,
        "published" if summary.published else "unchanged",
        summary.customers,
        time.monotonic() - started,
        steps,
    )
    for warning in (*summary.warnings, *warnings):
        logger.warning(warning)
    return {
        "as_of_date": summary.as_of_date.isoformat() if summary.as_of_date else None,
        "published": summary.published,
        "customers": summary.customers,
        "report": report_path,
        "data_docs": outcome.data_docs_path,
    }


def _report(ctx: RunContext, as_of: date, published: bool, warnings: list[Any]) -> str | None:
    """The HTML report, drawn again when the snapshot changed (or was never drawn)."""
    from servio.flows.run import report as report_task
    from servio.report import default_report_path

    existing = default_report_path(ctx.lake)
    if not published and existing.exists():
        return str(existing)
    try:
        return report_task(ctx.settings, ctx.lake, as_of)
    except Exception as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        warnings.append(f"the HTML report could not be written ({reason}); the next run writes it")
        return None
