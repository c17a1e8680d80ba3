"""`servio-run`: the main job. Ingest everything pending in the landing zone, publish the
curated tables, then the snapshot for one as-of date — in one process, no server needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from servio.config import Settings, load_settings
from servio.flows.runners import task_mapper, threads
from servio.flows.tasks import PREFECT_TASKS
from servio.lake import Lake
from servio.raw.landing import LandedFile
from servio.steps import sequence
from servio.steps.context import RunContext
from servio.steps.publish import IngestSummary
from servio.steps.snapshot import SnapshotSummary
from servio.steps.staging import StagedFile
from servio.steps.summary import quarantined_in_run, top_reasons


@dataclass
class RunSummary:
    run_id: str
    files_seen: int
    ingest: IngestSummary
    snapshot: SnapshotSummary
    staged: list[StagedFile] = field(default_factory=list)
    curated_root: str = ""
    report_path: str | None = None
    data_docs_path: str | None = None
    # What failed after the tables were published (Data Docs, report): `servio run` exits 6.
    warnings: list[str] = field(default_factory=list)
    duplicates: list[LandedFile] = field(default_factory=list)  # known content, another name
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per step
    locked: bool = False  # the run took the lake lock (it had something to write)


@task(name="write-report", cache_policy=NO_CACHE)
def report(settings: Settings, lake: Lake, as_of: date) -> str:
    from servio.report import default_report_path, write_report

    path = write_report(lake, settings, default_report_path(lake), as_of)
    create_link_artifact(
        key="servio-report", link=path.resolve().as_uri(), link_text=f"servio report as of {as_of}"
    )
    return str(path)


@flow(name="servio-run", log_prints=True, task_runner=threads())
def run_pipeline(
    config_path: str | None = None,
    as_of: date | None = None,
    wait_seconds: float = 0.0,
    write_html_report: bool = True,
    dask_address: str | None = None,
    snapshot_buckets: int | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """Ingest all pending exports and publish the snapshot for `as_of` (default: latest date),
    then draw the HTML report when the snapshot changed. `dask_address` and
    `snapshot_buckets` override the settings of the same name for this run; `run_id` names
    the run (default: a new id), so `servio run` can name it before Prefect starts."""
    overrides = {"dask_address": dask_address, "snapshot_buckets": snapshot_buckets}
    settings = load_settings(config_path, overrides={k: v for k, v in overrides.items() if v})
    # bucket tasks on the flow's runner
    ctx = RunContext.start(settings, mapper=task_mapper, run_id=run_id)
    plan = sequence.Plan(snapshot=as_of or sequence.LATEST, wait_seconds=wait_seconds)
    timed = sequence.Timed(PREFECT_TASKS)  # seconds per step, for the run results
    outcome = sequence.run(ctx, plan, timed)
    assert outcome.ingest is not None and outcome.snapshot is not None
    _publish_artifacts(outcome, quarantined_in_run(ctx.lake, ctx.run_id))
    if outcome.data_docs_path is not None:
        create_link_artifact(
            key="servio-data-docs",
            link=Path(outcome.data_docs_path).resolve().as_uri(),
            link_text="Data Docs",
        )
    summary = RunSummary(
        ctx.run_id,
        outcome.discovered.files,
        outcome.ingest,
        outcome.snapshot,
        outcome.staged,
        str(ctx.lake.root),
        data_docs_path=outcome.data_docs_path,
        warnings=outcome.warnings,
        duplicates=outcome.discovered.duplicates,
        seconds=timed.seconds,
        locked=outcome.locked,
    )
    snap = outcome.snapshot
    if write_html_report and snap.as_of_date is not None and snap.customers:
        summary.report_path = _report(summary, settings, ctx.lake, as_of)
    return summary


def _report(summary: RunSummary, settings: Settings, lake: Lake, asked: date | None) -> str | None:
    """The HTML report of the snapshot, drawn again when the snapshot changed or another date
    was asked for; a failure to write it (a full disk) is a warning."""
    from servio.report import default_report_path

    snap = summary.snapshot
    assert snap.as_of_date is not None
    existing = default_report_path(lake)
    if not (snap.published or asked is not None or not existing.exists()):
        return str(existing)
    try:
        return report(settings, lake, snap.as_of_date)
    except Exception as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        summary.warnings.append(
            f"the HTML report could not be written ({reason}); the tables are published, and "
            "the next run writes it"
        )
        return None


def _publish_artifacts(outcome: sequence.Outcome, quarantined: pl.DataFrame) -> None:
    ingest, snap = outcome.ingest, outcome.snapshot
    assert ingest is not None and snap is not None
    rows = [
        {
            "file": s.landed.relative_path,
            "source": s.landed.source,
            "status": s.status,
            "rows_read": s.rows_read,
            "rows_valid": s.rows_valid,
            "rows_quarantined": s.rows_quarantined,
            "reason": s.reason or "",
        }
        for s in outcome.staged
    ]
    if rows:
        create_table_artifact(key="servio-ingest-files", table=rows, description="Per-file counts")
    lines = [
        "# servio run",
        f"- files ingested: {ingest.files_ingested}, rejected: {ingest.files_rejected}, "
        f"duplicates: {ingest.files_duplicate}, left for the next run: {ingest.files_deferred}",
        f"- rows read: {ingest.rows_read}, valid: {ingest.rows_valid}, quarantined: {ingest.rows_quarantined}",
        f"- snapshot as of {snap.as_of_date}: {snap.customers} customers",
        *(f"  - {action}: {n}" for action, n in snap.actions.items()),
        *(f"- warning: {warning}" for warning in snap.warnings),
        "",
        "## Top quarantine reasons",
        *(f"- `{code}`: {n}" for code, n in top_reasons(quarantined)),
    ]
    create_markdown_artifact(key="servio-run-summary", markdown="\n".join(lines))
