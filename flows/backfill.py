"""`backfill`: recompute the snapshots of a date range, bounded in concurrency, idempotent and
resumable — a date whose published fingerprint matches its inputs is skipped unless forced.

In process (a pool of K threads, each snapshot under the lake lock) or on a Prefect server
(one `build-snapshot` deployment run per date, keyed by date + fingerprint)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import date, timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from servio.config import Settings, load_settings
from servio.flows.snapshot import DEFAULT_WAIT_SECONDS, snapshot_for_date, snapshot_task
from servio.pipeline import snapshot_fingerprint
from servio.storage import Lake

SNAPSHOT_DEPLOYMENT = "build-snapshot/servio-snapshot"
DONE, PUBLISHED, UNCHANGED, FAILED = "already done", "published", "unchanged", "failed"


@dataclass(frozen=True)
class DateOutcome:
    as_of: date
    outcome: str
    customers: int = 0
    seconds: float = 0.0
    detail: str = ""


def dates_between(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def is_done(settings: Settings, lake: Lake, as_of: date) -> bool:
    """The published snapshot for `as_of` was computed from exactly today's inputs."""
    known = lake.state().get("snapshot_fingerprints")
    published = known.get(as_of.isoformat()) if isinstance(known, dict) else None
    return published == snapshot_fingerprint(lake, settings, as_of)


def _in_process(
    settings: Settings, lake: Lake, as_of: date, force: bool, wait: float
) -> DateOutcome:
    started = time.monotonic()
    try:
        summary = snapshot_for_date(settings, lake, as_of, force, wait)
    except Exception as exc:  # one bad date must not stop the others; the table shows it
        return DateOutcome(as_of, FAILED, 0, time.monotonic() - started, str(exc))
    outcome = PUBLISHED if summary.published else UNCHANGED
    return DateOutcome(as_of, outcome, summary.customers, time.monotonic() - started)


def _on_server(
    settings: Settings, lake: Lake, as_of: date, force: bool, wait: float
) -> DateOutcome:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    started = time.monotonic()
    fingerprint = snapshot_fingerprint(lake, settings, as_of)
    key = f"snapshot-{as_of}-{fingerprint}" + (f"-force-{time.time_ns()}" if force else "")
    try:
        run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync call returns the run
            SNAPSHOT_DEPLOYMENT,
            parameters={"as_of": as_of.isoformat(), "force": force, "wait_seconds": wait},
            idempotency_key=key,
            timeout=None,
        )
    except Exception as exc:
        return DateOutcome(as_of, FAILED, 0, time.monotonic() - started, str(exc))
    state = run.state
    ok = state is not None and state.is_completed()
    detail = f"flow run {run.name} ({state.name if state else 'unknown'})"
    customers = _customers(lake, as_of) if ok else 0
    outcome = PUBLISHED if ok else FAILED
    return DateOutcome(as_of, outcome, customers, time.monotonic() - started, detail)


def _customers(lake: Lake, as_of: date) -> int:
    import polars as pl

    from servio.schemas.snapshot_tables import CUSTOMER_SEGMENTS

    segments = lake.scan(CUSTOMER_SEGMENTS).filter(pl.col("as_of_date") == as_of)
    return int(segments.select(pl.len()).collect().item())


def run_backfill(
    settings: Settings,
    start: date,
    end: date,
    parallel: int = 2,
    force: bool = False,
    on_server: bool = False,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    on_done: Callable[[DateOutcome], None] | None = None,
) -> list[DateOutcome]:
    """Snapshots for every date in [start, end], at most `parallel` at a time, in date order."""
    if parallel < 1:
        raise ValueError("--parallel must be at least 1")
    lake = Lake(settings.curated_root)
    outcomes: list[DateOutcome] = []
    todo: list[date] = []
    for as_of in dates_between(start, end):
        if not force and is_done(settings, lake, as_of):
            outcomes.append(DateOutcome(as_of, DONE))
            if on_done:
                on_done(outcomes[-1])
        else:
            todo.append(as_of)
    one = _on_server if on_server else _in_process
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="servio-backfill") as pool:
        futures = [pool.submit(one, settings, lake, d, force, wait_seconds) for d in todo]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            if on_done:
                on_done(outcome)
    return sorted(outcomes, key=lambda o: o.as_of)


@flow(name="backfill", log_prints=True)
def backfill(
    start: date,
    end: date,
    parallel: int = 2,
    force: bool = False,
    config_path: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> list[dict[str, object]]:
    """Recompute the snapshots from `start` to `end` (inclusive); done dates are skipped."""
    logger = get_run_logger()
    settings = load_settings(config_path)
    lake = Lake(settings.curated_root)
    dates = dates_between(start, end)
    outcomes: list[DateOutcome] = []
    todo = [d for d in dates if force or not is_done(settings, lake, d)]
    outcomes += [DateOutcome(d, DONE) for d in dates if d not in todo]
    # Windows of `parallel` task runs: bounded concurrency, one task run per date in the UI.
    for first in range(0, len(todo), max(parallel, 1)):
        window = todo[first : first + max(parallel, 1)]
        futures = [snapshot_task.submit(settings, lake, d, force, wait_seconds) for d in window]
        for as_of, future in zip(window, futures, strict=True):
            try:
                summary = future.result()
            except Exception as exc:
                outcomes.append(DateOutcome(as_of, FAILED, detail=str(exc)))
                continue
            outcome = PUBLISHED if summary.published else UNCHANGED
            outcomes.append(DateOutcome(as_of, outcome, summary.customers))
    outcomes.sort(key=lambda o: o.as_of)
    rows = [{**asdict(o), "as_of": o.as_of.isoformat()} for o in outcomes]
    create_table_artifact(
        key="servio-backfill", table=rows, description=f"servio backfill {start} → {end}"
    )
    failed = [o for o in outcomes if o.outcome == FAILED]
    logger.info("backfill %s → %s: %d dates, %d failed", start, end, len(outcomes), len(failed))
    if failed:
        raise RuntimeError(
            f"{len(failed)} date(s) failed: {', '.join(str(o.as_of) for o in failed)}"
        )
    return rows
