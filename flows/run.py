"""`servio-run`: the main job. Ingest everything pending in the landing zone, publish the
curated tables, then the snapshots for one as-of date — in one process, no server needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from servio import progress
from servio.config import Settings, check_raw_root, load_settings
from servio.flows.runners import task_mapper, threads
from servio.landing import LandedFile
from servio.pipeline import (
    IngestSummary,
    SnapshotSummary,
    StagedFile,
    build_data_docs,
    build_snapshots,
    keep_validation_results,
    new_run_id,
    pending_files,
    publish_ingest,
    quarantined_in_run,
    stage_file,
    top_reasons,
)
from servio.storage import Lake
from servio.validation.gx import GxValidator


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


@task(name="discover-pending", cache_policy=NO_CACHE)
def discover(settings: Settings, lake: Lake) -> tuple[list[LandedFile], list[LandedFile]]:
    todo, duplicates = pending_files(settings, lake)
    get_run_logger().info(
        "%d file(s) pending, %d with already-known content", len(todo), len(duplicates)
    )
    return todo, duplicates


@task(name="stage-file", cache_policy=NO_CACHE, task_run_name="stage {landed.relative_path}")
def stage(
    landed: LandedFile, settings: Settings, lake: Lake, run_id: str, ingested_at: datetime
) -> StagedFile:
    staged = stage_file(landed, settings, lake, run_id, ingested_at, GxValidator())
    get_run_logger().info(
        "%s: %s, %d read, %d valid, %d quarantined",
        landed.relative_path,
        staged.status,
        staged.rows_read,
        staged.rows_valid,
        staged.rows_quarantined,
    )
    return staged


@task(name="publish-ingest", cache_policy=NO_CACHE)
def publish(
    staged: list[StagedFile],
    duplicates: list[LandedFile],
    settings: Settings,
    lake: Lake,
    run_id: str,
) -> IngestSummary:
    return publish_ingest(staged, duplicates, settings, lake, run_id)


@task(name="build-data-docs", cache_policy=NO_CACHE)
def data_docs(lake: Lake) -> str | None:
    index = build_data_docs(lake)
    if index is not None:
        create_link_artifact(
            key="servio-data-docs", link=index.resolve().as_uri(), link_text="Data Docs"
        )
    return str(index) if index else None


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
) -> RunSummary:
    """Ingest all pending exports and publish the snapshot for `as_of` (default: latest date),
    then draw the HTML report when the snapshot changed."""
    settings = load_settings(config_path)
    check_raw_root(settings)  # before any data is touched
    lake = Lake(settings.curated_root)
    run_id = new_run_id()
    ingested_at = datetime.now(UTC)
    with lake.lock(run_id, wait_seconds):
        lake.recover()
        todo, duplicates = discover(settings, lake)
        futures = [stage.submit(f, settings, lake, run_id, ingested_at) for f in todo]
        staged: list[StagedFile] = []
        for done, future in enumerate(futures, start=1):
            staged.append(future.result())
            progress.report("ingest", done, len(futures))
        keep_validation_results(staged, lake, run_id)  # Data Docs survive a kill after publish
        ingest = publish(staged, duplicates, settings, lake, run_id)
        progress.report("snapshot", 0, 1)
        # The bucket tasks go to the flow's task runner (threads, or a Dask cluster).
        snap = build_snapshots(settings, lake, run_id, as_of, mapper=task_mapper)
        progress.report("snapshot", 1, 1)
        warnings: list[str] = []
        docs = _after_publish(warnings, "Great Expectations Data Docs", data_docs, lake)
        lake.discard_staging(run_id)
    _publish_artifacts(staged, ingest, snap, quarantined_in_run(lake, run_id))
    report_path = None
    if write_html_report and snap.as_of_date is not None and snap.customers:
        from servio.report import default_report_path

        existing = default_report_path(lake)
        # An explicit date may differ from the existing report's: draw it again.
        fresh = snap.published or as_of is not None or not existing.exists()
        report_path = (
            _after_publish(warnings, "HTML report", report, settings, lake, snap.as_of_date)
            if fresh
            else str(existing)
        )
    summary = RunSummary(run_id, len(todo) + len(duplicates), ingest, snap, staged, str(lake.root))
    summary.report_path = report_path
    summary.data_docs_path = docs
    summary.warnings = warnings
    return summary


def _after_publish(warnings: list[str], what: str, step: Any, *args: Any) -> Any:
    """Run a step that comes after the tables were published; its failure (a full disk) is
    a warning, not a failed run: the tables stand, and the next run writes what is missing."""
    try:
        return step(*args)
    except Exception as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        warnings.append(
            f"the {what} could not be written ({reason}); the tables are published, and the "
            "next run writes it"
        )
        get_run_logger().warning("%s failed after the publish", what, exc_info=True)
        return None


def _publish_artifacts(
    staged: list[StagedFile],
    ingest: IngestSummary,
    snap: SnapshotSummary,
    quarantined: pl.DataFrame,
) -> None:
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
        for s in staged
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
        "",
        "## Top quarantine reasons",
        *(f"- `{code}`: {n}" for code, n in top_reasons(quarantined)),
    ]
    create_markdown_artifact(key="servio-run-summary", markdown="\n".join(lines))
