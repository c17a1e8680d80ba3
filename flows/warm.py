"""Warm processes: the served `ingest-file` and `build-snapshot` runs execute in long-lived
processes that imported servio, Prefect's engine and Great Expectations once, instead of a
fresh Python per run (Prefect's runner spawns one per run: 4–8 s of imports per landed file).

Each warm process serves one deployment and executes one run at a time, the way Prefect's
runner does, through public API only: it reads the deployment's scheduled runs every
`POLL_SECONDS`, every `MARK_POLLED_SECONDS` with `get_scheduled_flow_runs_for_deployments`,
which also records the poll as the deployment's `last_polled` (what `check_served` reads)
and otherwise with `read_flow_runs` and the same filter (measured on a test server: ~20 ms
of its CPU per look that marks the deployment ready, ~10 ms per plain read; several warm
processes look every second). It claims the first by proposing Pending (the server's
deployment concurrency limit answers: no slot → the run stays AwaitingConcurrencySlot and
the process looks again), records itself as the run's `infrastructure_pid` (host:pid, as
Prefect's process worker does), and executes it in-process with `prefect.flow_engine.run_flow`
(states, INFO logs to the UI, artifacts, heartbeats, the concurrency lease: the engine's,
as in a runner's child process).

`WarmPool`, in `servio serve`, starts the processes (spawn, never fork: delta-rs panics in a
forked process), one per allowed ingest run (`serve_ingest_runs`) and one for snapshots, and
watches them every `WATCH_SECONDS`: a process that died is replaced, and the run it had
claimed is marked Crashed (servio's catch-up then ingests its files); a run cancelled from
the UI (Cancelling) has its process killed, is marked Cancelled, and the process is replaced.
A process is also replaced, between runs, after `runs_per_process` runs (`servio serve
--runs-per-process`, default RUNS_PER_PROCESS; 1 is a fresh, preloaded process per run) or
above `RECYCLE_MIB` of memory, so what a run leaves behind cannot grow without bound."""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

log = logging.getLogger("servio.flows.warm")

POLL_SECONDS = 1.0  # a warm process's look for scheduled runs (Prefect's runner: 10 s)
MARK_POLLED_SECONDS = 10.0  # its look that also records last_polled (dispatch: 90 s fresh)
WATCH_SECONDS = 0.5  # the pool's look at its processes and their runs
RUNS_PER_PROCESS = 200  # runs a warm process executes before it is replaced (between runs)
RECYCLE_MIB = 3072  # resident memory above which it is replaced (between runs)
RESTART_BACKOFF = 5.0  # seconds at least between two starts of one slot

# Messages of a warm process to its pool (over a pipe).
READY, CLAIM, FREE, DONE = "ready", "claim", "free", "done"


# ---------------------------------------------------------------------------------------
# In a warm process


def warm_up(deployment: str) -> dict[str, Any]:
    """Import what a run of `deployment` needs and load Great Expectations once; the flows
    by deployment name."""
    from servio.flows.dispatch import INGEST, SNAPSHOT
    from servio.flows.ingest_file import ingest_file
    from servio.flows.snapshot import build_snapshot

    if deployment == INGEST:
        from servio.steps.context import load_validator

        load_validator()  # GX's import and its context: most of a cold run's fixed cost
    elif deployment == SNAPSHOT:  # the report (Altair, Jinja2) and the Data Docs
        for module in ("servio.flows.run", "servio.report", "servio.validation.datadocs"):
            importlib.import_module(module)
    return {INGEST: ingest_file, SNAPSHOT: build_snapshot}


def _release_memory() -> None:
    """What a finished run held goes back: Python's garbage, then glibc's free lists."""
    gc.collect()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def serve_warm(deployment: str, conn: Any, parent: int, runs_per_process: int) -> None:
    """A warm process's life: warm up, then claim and execute runs of `deployment` one at a
    time until it should be replaced or its parent (`servio serve`) is gone."""
    from prefect import get_client
    from prefect.exceptions import Abort, ObjectNotFound
    from prefect.flow_engine import run_flow
    from prefect.states import Pending
    from prefect.types._datetime import now
    from prefect.utilities.engine import propose_state_sync

    flows = warm_up(deployment)
    flow = flows[deployment]
    host = socket.gethostname()
    conn.send((READY, None))
    executed = 0
    with get_client(sync_client=True) as client:
        deployment_id = None
        while deployment_id is None:  # `serve` registers it while this process warms up
            if os.getppid() != parent:
                return
            try:
                deployment_id = client.read_deployment_by_name(deployment).id
            except ObjectNotFound:
                time.sleep(POLL_SECONDS)
        marked = -MARK_POLLED_SECONDS  # the first look records the poll
        while os.getppid() == parent:
            try:
                mark = time.monotonic() - marked >= MARK_POLLED_SECONDS
                runs = _scheduled_runs(client, deployment_id, now("UTC"), mark)
                if mark:
                    marked = time.monotonic()
            except Exception:  # the server restarting: look again
                log.warning("could not read the scheduled runs of %s", deployment, exc_info=True)
                runs = []
            runs.sort(
                key=lambda r: (r.next_scheduled_start_time is None, r.next_scheduled_start_time)
            )
            claimed = None
            for run in runs:
                conn.send((CLAIM, run.id))  # before the claim: if this process dies, it crashed
                try:
                    state = propose_state_sync(client, Pending(), flow_run_id=run.id)
                except Abort:  # another process took it, or it was cancelled
                    state = None
                except Exception:
                    log.warning("could not claim %s", run.name, exc_info=True)
                    state = None
                if state is not None and state.is_pending():
                    claimed = run
                    break
                conn.send((FREE, run.id))  # no slot free (AwaitingConcurrencySlot), or gone
                if state is not None and not state.is_pending():
                    break  # the concurrency limit said no: the later runs wait too
            if claimed is None:
                time.sleep(POLL_SECONDS)
                continue
            try:  # where it runs, in the UI, as Prefect's process worker records it
                client.update_flow_run(claimed.id, infrastructure_pid=f"{host}:{os.getpid()}")
            except Exception:
                log.warning("could not record where %s runs", claimed.name, exc_info=True)
            try:
                run_flow(flow, flow_run=client.read_flow_run(claimed.id), return_type="state")
            except Exception:  # the engine recorded the run's state; this process carries on
                log.exception("run %s ended with an engine error", claimed.name)
            conn.send((DONE, claimed.id))
            executed += 1
            _release_memory()
            if executed >= runs_per_process or _rss_mib() > RECYCLE_MIB:
                return  # the pool starts a fresh one


def _scheduled_runs(client: Any, deployment_id: UUID, before: Any, mark: bool) -> list[Any]:
    """The deployment's Scheduled runs due by `before`, soonest first: the very filter of
    `get_scheduled_flow_runs_for_deployments`, which is called when `mark` (it also records
    the poll as the deployment's `last_polled` and marks it ready)."""
    if mark:
        return list(
            client.get_scheduled_flow_runs_for_deployments([deployment_id], scheduled_before=before)
        )
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterNextScheduledStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    return list(
        client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=before),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            ),
            sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
        )
    )


# ---------------------------------------------------------------------------------------
# In `servio serve`


@dataclass
class _Slot:
    deployment: str
    process: Any = None
    conn: Any = None
    run_id: UUID | None = None  # the run its process claimed and has not finished
    started: float = 0.0
    ready: bool = False
    starts: int = 0


class WarmPool:
    """Warm processes for these deployments ("flow/deployment", one process each), started
    and watched from `servio serve` (see the module docstring)."""

    def __init__(
        self,
        deployments: list[str],
        on_ready: Callable[[float], object] | None = None,
        runs_per_process: int = RUNS_PER_PROCESS,
    ) -> None:
        self.slots = [_Slot(d) for d in deployments]
        self.runs_per_process = runs_per_process
        self.on_ready = on_ready  # called once, with the seconds the first warm-up took
        self._created = time.monotonic()
        self._stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for slot in self.slots:
            self._start(slot)
        self._thread = threading.Thread(target=self._watch, name="servio-warm", daemon=True)
        self._thread.start()

    def _start(self, slot: _Slot) -> None:
        if slot.process is not None and slot.process.exitcode != 0:  # not a planned replacement
            wait = RESTART_BACKOFF - (time.monotonic() - slot.started)
            if wait > 0 and self._stop.wait(wait):
                return
        ours, theirs = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=serve_warm,
            args=(slot.deployment, theirs, os.getpid(), self.runs_per_process),
            name=f"servio-warm-{slot.deployment.split('/')[0]}",
            daemon=False,  # a run may start processes of its own (a local Dask cluster)
        )
        process.start()
        theirs.close()
        slot.process, slot.conn, slot.run_id, slot.ready = process, ours, None, False
        slot.started, slot.starts = time.monotonic(), slot.starts + 1

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.slots if s.process is not None and s.process.pid]

    def _watch(self) -> None:
        from prefect import get_client

        announced = False
        # One client for every look (a new one each half second cost its setup each time).
        with get_client(sync_client=True) as client:
            while not self._stop.wait(WATCH_SECONDS):
                for slot in self.slots:
                    try:
                        self._look(slot, client)
                    except Exception:  # the pool must outlive one bad look (server restarting)
                        log.warning(
                            "warm process of %s: look failed", slot.deployment, exc_info=True
                        )
                if not announced and all(s.ready for s in self.slots):
                    announced = True
                    if self.on_ready is not None:
                        self.on_ready(time.monotonic() - self._created)

    def _look(self, slot: _Slot, client: Any) -> None:
        self._read(slot)
        process = slot.process
        if process is None:
            return
        if not process.is_alive():
            process.join(0)
            self._read(slot)  # what it said before it died
            if slot.run_id is not None:
                _finish(slot.run_id, f"its warm process died (exit code {process.exitcode})")
            elif process.exitcode not in (0, None):
                log.warning("warm process of %s died: exit %s", slot.deployment, process.exitcode)
            if not self._stop.is_set():
                self._start(slot)
            return
        if slot.run_id is not None and _cancelling(client, slot.run_id):
            log.warning("run %s cancelled: stopping its warm process", slot.run_id)
            process.kill()
            process.join(10)
            self._read(slot)
            if slot.run_id is not None:
                _finish(slot.run_id, "cancelled from the UI", cancelled=True)
                slot.run_id = None
            if not self._stop.is_set():
                self._start(slot)

    @staticmethod
    def _read(slot: _Slot) -> None:
        with contextlib.suppress(EOFError, OSError):
            while slot.conn is not None and slot.conn.poll():
                kind, run_id = slot.conn.recv()
                if kind == READY:
                    slot.ready = True
                elif kind == CLAIM:
                    slot.run_id = run_id
                elif kind in (FREE, DONE) and slot.run_id == run_id:
                    slot.run_id = None

    def stop(self) -> None:
        """Stop watching and end the processes; a run one was executing is marked Crashed
        (the next `serve`'s catch-up takes its files)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for slot in self.slots:
            if slot.process is not None and slot.process.is_alive():
                slot.process.terminate()
        for slot in self.slots:
            if slot.process is not None:
                slot.process.join(10)
                if slot.process.is_alive():
                    slot.process.kill()
            self._read(slot)
            if slot.run_id is not None:
                with contextlib.suppress(Exception):  # the server may be gone first
                    _finish(slot.run_id, "servio serve stopped")


def _cancelling(client: Any, run_id: UUID) -> bool:
    state = client.read_flow_run(run_id).state
    return state is not None and state.is_cancelling()


def _finish(run_id: UUID, why: str, cancelled: bool = False) -> None:
    """Mark a run its process no longer executes Crashed (Cancelled when asked for), unless it
    already ended (the process died after the run's final state)."""
    from prefect import get_client
    from prefect.states import Cancelled, Crashed

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        if state is None or state.is_final() or state.is_scheduled():
            return  # ended, or never claimed (the claim was refused)
        final: Any = Cancelled(message=why) if cancelled else Crashed(message=f"Crashed: {why}")
        client.set_flow_run_state(run_id, final, force=True)
    log.warning("marked run %s %s: %s", run_id, final.name, why)
