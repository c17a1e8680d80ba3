"""`build-snapshot`: publish the customer_* partitions for one as-of date under the lake lock.
Triggered by `servio.curated.updated`, by the daily cron, and by backfills."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from servio import snapshots
from servio.config import Settings, load_settings
from servio.flows.runners import task_mapper, threads, transient_error
from servio.pipeline import SnapshotSummary, build_snapshots
from servio.storage import Lake

DEFAULT_WAIT_SECONDS = 600.0
# The lake lock is per process (pid in the lock file); threads of one process queue here first.
_IN_PROCESS = threading.Lock()


def new_run_id(kind: str) -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{kind}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def writing(lake: Lake, run_id: str, wait_seconds: float) -> Iterator[None]:
    """The lake lock (waiting up to `wait_seconds` for another writer), then roll forward any
    committed publication left by a crash; staging of this run is dropped on the way out."""
    with _IN_PROCESS, lake.lock(run_id, wait_seconds):
        lake.recover()
        try:
            yield
        finally:
            lake.discard_staging(run_id)


def snapshot_for_date(
    settings: Settings,
    lake: Lake,
    as_of: date | None,
    force: bool = False,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    mapper: snapshots.Mapper[Any] = snapshots.in_order,
) -> SnapshotSummary:
    """One snapshot under the lock; unchanged inputs publish nothing unless `force`.
    `mapper` runs its bucket tasks (in this thread by default)."""
    run_id = new_run_id("snapshot")
    with writing(lake, run_id, wait_seconds):
        return build_snapshots(settings, lake, run_id, as_of, force=force, mapper=mapper)


@task(
    name="snapshot-date",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=transient_error,
    task_run_name="snapshot {as_of}",
)
def snapshot_task(
    settings: Settings, lake: Lake, as_of: date | None, force: bool, wait_seconds: float
) -> SnapshotSummary:
    summary = snapshot_for_date(settings, lake, as_of, force, wait_seconds)
    get_run_logger().info(
        "snapshot %s: %s, %d customers",
        summary.as_of_date,
        "published" if summary.published else "unchanged",
        summary.customers,
    )
    return summary


@flow(name="build-snapshot", log_prints=True, task_runner=threads())
def build_snapshot(
    as_of: date | None = None,
    force: bool = False,
    config_path: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> dict[str, object]:
    """Publish the snapshot for `as_of` (default: the latest date in the data)."""
    settings = load_settings(config_path)
    lake = Lake(settings.curated_root)
    # The bucket tasks go to the flow's task runner (threads, or a Dask cluster).
    summary = snapshot_for_date(settings, lake, as_of, force, wait_seconds, mapper=task_mapper)
    lines = [
        f"# snapshot as of {summary.as_of_date}",
        f"- {'published' if summary.published else 'unchanged (inputs identical)'}",
        f"- customers: {summary.customers}",
        *(f"  - {action}: {n}" for action, n in summary.actions.items()),
    ]
    create_markdown_artifact(key="servio-snapshot", markdown="\n".join(lines))
    return {
        "as_of_date": summary.as_of_date.isoformat() if summary.as_of_date else None,
        "published": summary.published,
        "customers": summary.customers,
    }
