"""The steps as Prefect tasks, and the executor that makes `servio.steps.sequence.run` run
them as such: one task run per step (and per landed file), named as the UI shows them, with
retries only for what a retry can fix (an `OSError` of the disk or the network)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

from prefect import Task, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from servio.steps.check import check_files
from servio.steps.datadocs import build_data_docs
from servio.steps.discover import discover
from servio.steps.maintenance import maintain_lake
from servio.steps.publish import publish_ingest
from servio.steps.read import read_file
from servio.steps.results import RunRecord, flow_run_failed
from servio.steps.sequence import Timed
from servio.steps.snapshot import build_snapshot

T = TypeVar("T")


def transient_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: an OSError (disk, network storage), never bad data."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


def warn_unwritten(problem: str | None) -> None:
    """A flow run's results document could not be written: a warning in the run's log, never
    a failed run (as `servio run` says it and goes on)."""
    if problem:
        get_run_logger().warning(problem)


@contextlib.contextmanager
def failure_documented(record: RunRecord, timed: Timed) -> Iterator[None]:
    """Around a served flow's `sequence.run`: when it raises, the run's results document is
    written with the exit code `servio run` would give (and the steps' seconds so far), then
    the exception goes on to fail the flow run."""
    try:
        yield
    except Exception as exc:
        record.seconds.update(timed.seconds)
        warn_unwritten(flow_run_failed(record, exc))
        raise


def _logged_read(ctx: Any, landed: Any) -> Any:
    staged = read_file(ctx, landed)
    get_run_logger().info("%s: %s, %d read", landed.relative_path, staged.status, staged.rows_read)
    return staged


def _logged_check(ctx: Any, files: Any) -> Any:
    checked = check_files(ctx, files)
    for staged in checked:
        get_run_logger().info(
            "%s: %s, %d read, %d valid, %d quarantined",
            staged.landed.relative_path,
            staged.status,
            staged.rows_read,
            staged.rows_valid,
            staged.rows_quarantined,
        )
    return checked


def snapshot_task_name() -> str:
    """`snapshot 2026-11-26`, or `snapshot latest` when the date is the latest with activity
    (as_of None) — not `snapshot None`."""
    from prefect.runtime import task_run

    return f"snapshot {task_run.parameters.get('as_of') or 'latest'}"


def _retried(name: str, fn: Callable[..., Any], **options: Any) -> Task[Any, Any]:
    return task(
        name=name,
        cache_policy=NO_CACHE,
        retries=2,
        retry_delay_seconds=5,
        retry_condition_fn=transient_error,
        **options,
    )(fn)


def _once(name: str, fn: Callable[..., Any], **options: Any) -> Task[Any, Any]:
    return task(name=name, cache_policy=NO_CACHE, **options)(fn)


TASKS: dict[Callable[..., Any], Task[Any, Any]] = {
    discover: _retried("discover", discover),
    read_file: _retried("read-file", _logged_read, task_run_name="read {landed.relative_path}"),
    # One task per source checks its files (one Great Expectations run per batch). Not
    # retried: it consumes the files' checked parts as it writes their staged rows.
    check_files: _once("check-files", _logged_check),
    # Not retried: a publish that failed after its commit point is finished by `recover()`
    # of the next run, never by publishing again.
    publish_ingest: _once("publish-ingest", publish_ingest),
    build_snapshot: _once("build-snapshot", build_snapshot, task_run_name=snapshot_task_name),
    build_data_docs: _once("build-data-docs", build_data_docs),
    maintain_lake: _once("maintain", maintain_lake),
}


class PrefectTasks:
    """An `Executor` for `sequence.run` inside a flow: each step is its task; fan-out goes
    to the flow's task runner (threads, or a Dask cluster) with `.map`."""

    def call(self, step: Callable[..., T], *args: Any) -> T:
        return cast(T, TASKS[step](*args))

    def map(self, step: Callable[..., T], items: Sequence[Any], *args: Any) -> Iterator[T]:
        if not items:
            return
        futures = TASKS[step].map(*(unmapped(a) for a in args), list(items))
        for future in futures:
            yield future.result()


PREFECT_TASKS = PrefectTasks()
