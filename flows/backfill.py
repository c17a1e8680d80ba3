"""`backfill`: recompute the snapshots of a date range as a flow (one task run per date, at
most `parallel` at a time), and `snapshot_on_server`, which `servio backfill` uses when a
Prefect server is configured: each date a run of the `build-snapshot` deployment, keyed by
date and input fingerprint so a repeated request returns the existing run."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from datetime import UTC, date, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from servio.config import Settings, load_settings
from servio.flows.tasks import transient_error
from servio.lake import Lake
from servio.steps import results
from servio.steps.backfill import (
    CANCELLED,
    DEFAULT_WAIT_SECONDS,
    DONE,
    FAILED,
    NO_DATA,
    PUBLISHED,
    DateOutcome,
    computing_settings,
    dates_between,
    outcome_of,
    snapshot_date,
)
from servio.steps.context import new_run_id
from servio.steps.snapshot import is_done, snapshot_fingerprint
from servio.steps.summary import customers_in_snapshot

SNAPSHOT_DEPLOYMENT = "build-snapshot/servio-snapshot"
CANCEL = threading.Event()  # set by `servio backfill` on Ctrl-C: served dates are cancelled

snapshot_task = task(
    name="snapshot-date",
    cache_policy=NO_CACHE,
    retries=2,  # the whole run again (lock, recover, snapshot): safe to repeat
    retry_delay_seconds=5,
    retry_condition_fn=transient_error,
    task_run_name="snapshot {as_of}",
)(snapshot_date)


def snapshot_on_server(settings: Settings, as_of: date, force: bool, wait: float) -> DateOutcome:
    """One date as a run of the `build-snapshot` deployment with the analyst's computing
    settings (`computing_settings`), waited for; Ctrl-C (`CANCEL`) cancels the run."""
    from prefect import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled

    started = time.monotonic()
    lake = Lake(settings.curated_root)
    fingerprint = snapshot_fingerprint(lake, settings, as_of)
    key = f"snapshot-{as_of}-{fingerprint}" + (f"-force-{time.time_ns()}" if force else "")
    if CANCEL.is_set():
        return DateOutcome(as_of, CANCELLED)
    try:
        run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync call returns the run
            SNAPSHOT_DEPLOYMENT,
            parameters={
                "as_of": as_of.isoformat(),
                "force": force,
                "wait_seconds": wait,
                "computing": computing_settings(settings),
                "report": False,
            },
            flow_run_name=f"snapshot {as_of}",
            idempotency_key=key,
            timeout=0,
            as_subflow=False,
        )
        with get_client(sync_client=True) as client:
            while True:
                run = client.read_flow_run(run.id)
                if run.state is not None and run.state.is_final():
                    break
                if CANCEL.is_set():
                    client.set_flow_run_state(run.id, Cancelled(message="backfill: Ctrl-C"))
                    return DateOutcome(as_of, CANCELLED, 0, time.monotonic() - started, run.name)
                time.sleep(0.5)
    except Exception as exc:
        return DateOutcome(as_of, FAILED, 0, time.monotonic() - started, str(exc))
    state = run.state
    ok = state is not None and state.is_completed()
    detail = f"flow run {run.name} ({state.name if state else 'unknown'})"
    customers = customers_in_snapshot(lake, as_of) if ok else 0
    outcome = (PUBLISHED if customers else NO_DATA) if ok else FAILED
    return DateOutcome(as_of, outcome, customers, time.monotonic() - started, detail)


@flow(name="backfill", log_prints=True, flow_run_name="backfill {start}…{end}")
def backfill(
    start: date,
    end: date,
    parallel: int = 2,
    force: bool = False,
    config_path: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> list[dict[str, object]]:
    """Recompute the snapshots from `start` to `end` (inclusive); done dates are skipped.

    Args:
        start: First as-of date, YYYY-MM-DD.
        end: Last as-of date, YYYY-MM-DD (inclusive).
        parallel: Snapshots at most in flight at once.
        force: Recompute dates already done.
        config_path: servio.toml of the lake (default: ./servio.toml).
        wait_seconds: Seconds each snapshot may wait for the lake lock.
    """
    logger = get_run_logger()
    started_at, started = datetime.now(UTC), time.monotonic()
    settings = load_settings(config_path or None)
    lake = Lake(settings.curated_root)
    dates = dates_between(start, end)
    todo = [d for d in dates if force or not is_done(settings, lake, d)]
    outcomes = [DateOutcome(d, DONE) for d in dates if d not in todo]
    # Windows of `parallel` task runs: bounded concurrency, one task run per date in the UI.
    for first in range(0, len(todo), max(parallel, 1)):
        window = todo[first : first + max(parallel, 1)]
        futures = [snapshot_task.submit(settings, d, force, wait_seconds) for d in window]
        for as_of, future in zip(window, futures, strict=True):
            try:
                summary = future.result()
            except Exception as exc:
                outcomes.append(DateOutcome(as_of, FAILED, detail=str(exc)))
                continue
            detail = "; ".join(summary.warnings)  # value models that did not converge
            outcomes.append(
                DateOutcome(as_of, outcome_of(summary), summary.customers, detail=detail)
            )
    outcomes.sort(key=lambda o: o.as_of)
    rows = [{**asdict(o), "as_of": o.as_of.isoformat()} for o in outcomes]
    create_table_artifact(
        key="servio-backfill", table=rows, description=f"servio backfill {start} → {end}"
    )
    failed = [o for o in outcomes if o.outcome == FAILED]
    logger.info("backfill %s → %s: %d dates, %d failed", start, end, len(outcomes), len(failed))
    # One run-results document for the whole backfill, as `servio backfill` writes.
    record = results.backfill_record(
        settings,
        new_run_id(results.BACKFILL, started_at),
        started_at,
        (start, end, max(parallel, 1), force, "flow"),
        outcomes,
        time.monotonic() - started,
    )
    problem = results.write(record, results.backfill_exit_code(outcomes))
    if problem:
        logger.warning(problem)
    if failed:
        raise RuntimeError(
            f"{len(failed)} date(s) failed: {', '.join(str(o.as_of) for o in failed)}"
        )
    return rows
