"""Asking for a run without flooding the server: at most one run of a deployment waits to
start, whatever the number of requests (a burst of landed files, an ingest per file asking
for a snapshot, the periodic catch-up).

Why this works for servio: a run of `ingest-file` ingests every file pending *when it
starts*, and a `build-snapshot` run computes from the ledger *when it starts*. So while a run
is still queued (Scheduled, AwaitingConcurrencySlot, Pending), a new request adds nothing: the
queued run will see the new file or the new data. How many runs execute at once is Prefect's
own deployment concurrency limit (`collision_strategy=ENQUEUE`, see `deployments.py`).

Two requesters racing (the watcher and an ingest run on another machine) pass the same
idempotency key — the deployment and its most recent run — so Prefect creates one run for
both. Why not an automation with a `within` window: Prefect's reactive trigger fires on the
first event and *drops* the events of the rest of its window (server/events/triggers.py,
"case #1"), so a file landing a second after a burst would wait for the next catch-up.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("servio.flows.dispatch")

# The deployments (`deployments.py`, `prefect.yaml`), named here so requesters need not
# import the flows.
INGEST_DEPLOYMENT = "servio-ingest"
SNAPSHOT_DEPLOYMENT = "servio-snapshot"
BACKFILL_DEPLOYMENT = "servio-backfill"
INGEST = f"ingest-file/{INGEST_DEPLOYMENT}"
SNAPSHOT = f"build-snapshot/{SNAPSHOT_DEPLOYMENT}"
BACKFILL = f"backfill/{BACKFILL_DEPLOYMENT}"

_lock = threading.Lock()  # requesters of one process (the watcher, the catch-up loop)


def _runs(
    client: Any, deployment_id: Any, types: list[Any], started: bool = False, limit: int = 10
) -> list[Any]:
    """Runs of the deployment in these state types, due now (a cron run scheduled for
    tomorrow is not queued), the most recently started first."""
    from datetime import UTC, datetime, timedelta

    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=types)) if types else None
    due = FlowRunFilterExpectedStartTime(
        before_=datetime.now(UTC) + timedelta(seconds=30)  # type: ignore[arg-type]
    )
    return list(
        client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=state,
                expected_start_time=due,
                start_time=FlowRunFilterStartTime(is_null_=False) if started else None,
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=limit,
        )
    )


def queued(client: Any, deployment_id: Any) -> list[Any]:
    """Runs of the deployment due and not started yet."""
    from prefect.client.schemas.objects import StateType

    return _runs(client, deployment_id, [StateType.SCHEDULED, StateType.PENDING])


def active(client: Any, deployment_id: Any) -> list[Any]:
    """Runs of the deployment due: queued or running."""
    from prefect.client.schemas.objects import StateType

    types = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    return _runs(client, deployment_id, types)


def request_run(
    deployment: str,
    run_name: str,
    parameters: dict[str, Any] | None = None,
    only_when_idle: bool = False,
    match: tuple[str, ...] = (),
) -> Any | None:
    """Create a run of `deployment` ("flow/deployment") unless one is already queued (then
    that run will do this request's work). `only_when_idle`: not even while one runs (the
    periodic catch-up). Only runs agreeing on the `match` parameters count (a snapshot of
    the latest date is not a backfill's snapshot of 1 October). Returns the new run, or None
    when coalesced."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    with _lock, get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        wanted = parameters or {}
        waiting = [
            run
            for run in (active(client, found.id) if only_when_idle else queued(client, found.id))
            if all(run.parameters.get(k) == wanted.get(k) for k in match)
        ]
        if waiting:
            log.debug("%s: coalesced into %s", run_name, waiting[0].name)
            return None
        # One key per "next run after the latest started one" (and per half minute, so a
        # queued run that was cancelled before it started does not block requests forever).
        latest = _runs(client, found.id, [], started=True, limit=1)
        after = latest[0].id if latest else "none"
        key = f"servio:{found.id}:after:{after}:{int(time.time() // 30)}"
        run = run_deployment(
            deployment,
            parameters=wanted,
            flow_run_name=run_name,
            idempotency_key=key,
            timeout=0,
            as_subflow=False,
        )
        log.info("requested %s (%s)", run_name, deployment)
        return run


class NotServed(RuntimeError):
    """No Prefect server answers, or nothing is serving the deployment: a run would wait
    forever."""


POLLED_WITHIN = 90.0  # seconds: a runner or worker polls every few seconds


def check_served(deployment: str) -> None:
    """Fail fast, with what to do, unless the server answers and a runner (`servio serve`)
    or a worker polled for the deployment's runs in the last POLLED_WITHIN seconds."""
    from datetime import UTC, datetime

    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
        if problem is not None:
            raise NotServed(f"no Prefect server answers at {url} ({problem})")
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            raise NotServed(
                f"the deployment {deployment} is not registered on {url}: start `servio serve` "
                "(or a worker of the servio work pool), or use --in-process"
            ) from None
        polled = found.last_polled
        age = (datetime.now(UTC) - polled).total_seconds() if polled else None
        if age is None or age > POLLED_WITHIN:
            since = "ever" if age is None else f"for {age:.0f} s"
            raise NotServed(
                f"nothing has served {deployment} {since} on {url}: start `servio serve` (or a "
                "worker of the servio work pool), or use --in-process"
            )
