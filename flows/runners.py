"""Where a flow's tasks run: threads in the flow's process (default), or a Dask cluster.

`with_runner(flow, settings)` returns the flow set to run its tasks on `settings.dask_address`
through prefect-dask's `DaskTaskRunner`: an existing scheduler (`tcp://host:8786`) or, with
`local`, a temporary cluster of worker processes on this machine. Tasks receive settings and
storage paths (never DataFrames), so a worker needs only servio installed and the lake's
storage reachable at the same address.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from prefect import Flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from servio.config import Settings
from servio.flows.tasks import transient_error

F = TypeVar("F", bound=Flow[Any, Any])
T = TypeVar("T")


# Threads that run a flow's tasks by default. Each staging task holds up to one chunk (about
# 1.5 GiB at 1M rows), so this also bounds memory; Polars already uses every core inside a
# task, so more threads would not be faster on this kind of machine.
THREADS = max(1, min(4, os.cpu_count() or 1))


def threads() -> Any:
    """The default task runner of servio's flows: a bounded thread pool (Prefect's own
    default has no bound: every landed file would be staged at once)."""
    return ThreadPoolTaskRunner(max_workers=THREADS)


def task_runner(settings: Settings) -> Any | None:
    """The Dask task runner the settings ask for, or None for the flow's default (`threads`)."""
    address = settings.dask_address
    if address is None:
        return None
    from prefect_dask import DaskTaskRunner

    if address == "local":
        spawn_workers()
        workers = max(1, min(4, os.cpu_count() or 1))
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": workers,
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",  # nothing listens beyond this machine
                "dashboard_address": None,
            }
        )
    return DaskTaskRunner(address=address)


def spawn_workers() -> None:
    """Worker processes servio starts are spawned (a fresh interpreter), never forked:
    deltalake (delta-rs) panics in a process forked after it was used. `spawn` is
    distributed's default; servio sets it explicitly so no user config can turn it to fork.
    (Prefect's served runs are spawned or exec'd too: `run_flow_in_subprocess`.)"""
    import dask

    dask.config.set({"distributed.worker.multiprocessing-method": "spawn"})


def with_runner(flow: F, settings: Settings) -> F:
    runner = task_runner(settings)
    return flow if runner is None else cast(F, flow.with_options(task_runner=runner))


@task(
    name="snapshot-part",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=transient_error,
    task_run_name="{label}",
)
def _snapshot_part(label: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return fn(*args)


def task_mapper(fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
    """A `servio.steps.context.Mapper` that runs each call as a task of the current flow's runner."""
    name = fn.__name__.strip("_")
    futures = [_snapshot_part.submit(f"{name} {i}", fn, args) for i, args in enumerate(calls)]
    return [future.result() for future in futures]
