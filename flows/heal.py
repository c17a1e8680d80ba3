"""Self-healing while `servio serve` stays up.

Three layers, each the cheapest that covers its case:
- A served run whose process dies (killed, out of memory) is reported Crashed by Prefect's
  runner itself, which watches its child processes.
- A run whose *runner* died too (the machine, or a killed `serve` with its runs) stops
  sending heartbeats (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`); Prefect's documented zombie
  automation (`install_zombie_automation`) marks it Crashed. A run stuck in Pending past
  `STALE_PENDING` (claimed by a runner that died before starting it) is marked Crashed here.
- Data: servio's own periodic catch-up (`catch_up_loop`): every `serve_catch_up_seconds`, the
  files no run has handled get one ingest run, and a snapshot older than the ledger gets a
  snapshot run — only when no run of that deployment is queued or running, so it costs one
  ledger read when all is well. Why not Prefect retries of the crashed run: a retried run
  would be a new process anyway, and the ledger, not the run history, knows what is missing
  (a run killed after its publish has nothing left to do).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from servio.config import Settings

log = logging.getLogger("servio.flows.heal")

HEARTBEAT_SECONDS = 30  # Prefect's minimum for heartbeat events
ZOMBIE_AFTER = timedelta(seconds=90)  # three missed heartbeats
STALE_PENDING = timedelta(minutes=3)
ZOMBIE_AUTOMATION = "servio: crash zombie flow runs"


def install_zombie_automation() -> None:
    """Prefect's zombie-run automation (docs: "Detect and respond to zombie flows"), created
    once per server: a flow run that sent a heartbeat and then nothing for ZOMBIE_AFTER is
    marked Crashed."""
    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    with get_client(sync_client=True) as client:
        if client.read_automations_by_name(ZOMBIE_AUTOMATION):
            return
        client.create_automation(
            AutomationCore(
                name=ZOMBIE_AUTOMATION,
                trigger=EventTrigger(
                    after={"prefect.flow-run.heartbeat"},
                    expect={
                        "prefect.flow-run.heartbeat",
                        "prefect.flow-run.Completed",
                        "prefect.flow-run.Failed",
                        "prefect.flow-run.Cancelled",
                        "prefect.flow-run.Crashed",
                    },
                    match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                    for_each={"prefect.resource.id"},
                    posture=Posture.Proactive,
                    threshold=1,
                    within=ZOMBIE_AFTER,
                ),
                actions=[
                    ChangeFlowRunState(
                        state=StateType.CRASHED,
                        name=None,
                        force=False,
                        message="Flow run marked as crashed: no heartbeat for "
                        f"{int(ZOMBIE_AFTER.total_seconds())} s (servio zombie automation).",
                    )
                ],
            )
        )


def reap_left_running(deployments: list[str], started: datetime) -> int:
    """When `servio serve` starts: mark Crashed the runs of its deployments still Running or
    Pending. Served deployments run only in the processes of a `serve` (no work pool), so
    such a run died with the previous `serve`; one killed before its first heartbeat would
    never be caught by the zombie automation, and would hold the catch-up back."""
    return _reap(deployments, ["RUNNING", "PENDING", "CANCELLING"], started, "serve restarted")


def reap_stale_pending(deployments: list[str]) -> int:
    """Mark Crashed the runs of these deployments stuck in Pending past STALE_PENDING."""
    cutoff = datetime.now(UTC) - STALE_PENDING
    return _reap(deployments, ["PENDING"], cutoff, "Pending too long: its runner is gone")


def _reap(deployments: list[str], types: list[str], before: datetime, why: str) -> int:
    """Mark Crashed the runs of these deployments in these states since before `before`."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    reaped = 0
    with get_client(sync_client=True) as client:
        ids = [client.read_deployment_by_name(name).id for name in deployments]
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType(t) for t in types])
                )
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=ids)),
        )
        for run in runs:
            since = run.state.timestamp if run.state else None
            if since is not None and since < before:
                client.set_flow_run_state(run.id, Crashed(message=why), force=True)
                log.warning("marked %s crashed (%s since %s): %s", run.name, run.state, since, why)
                reaped += 1
    return reaped


def catch_up_loop(settings: Settings, stop: threading.Event) -> None:
    """Every `serve_catch_up_seconds` until `stop`: stale runs reaped, pending files and a
    stale snapshot asked for (`servio.flows.watch.catch_up`)."""
    from servio.flows.dispatch import INGEST, SNAPSHOT
    from servio.flows.watch import catch_up

    while not stop.wait(settings.serve_catch_up_seconds):
        try:
            reap_stale_pending([INGEST, SNAPSHOT])
            catch_up(settings, wait_seconds=0)
        except Exception:  # the loop must outlive one bad pass (the server restarting)
            log.warning("catch-up pass failed; trying again", exc_info=True)
