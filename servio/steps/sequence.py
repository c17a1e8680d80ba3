"""The run sequence, written once: discover → stage (read each file, check each source) → lock →
recover → publish → snapshot → Data Docs → discard. `servio run`, every served flow, backfills, `servio maintain`, the
benchmarks and the fault harness call `run`; what differs between them is the `Plan` (what to
ingest and what to snapshot) and the `Executor` (plain calls here, or Prefect tasks).

The lock rule, one for every entry point: reading and staging files takes no lock (several
ingests stage at once; the staging folder is claimed, so another run's `recover()` keeps it);
everything that writes the lake — recovery, the publish, the snapshot, the Data Docs,
maintenance — happens under the lake lock, and the publish decides against the ledger again
(a file another run published meanwhile is not published twice). Nothing to publish, no
snapshot, no Data Docs and no maintenance asked: the lock is not taken at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal, Protocol, TypeVar

from servio import progress
from servio.config import Settings, check_raw_root
from servio.steps.check import by_source, check_files
from servio.steps.context import RunContext
from servio.steps.datadocs import build_data_docs, has_pending_results, keep_validation_results
from servio.steps.discover import Discovered, discover, problem_of
from servio.steps.maintenance import maintain_lake
from servio.steps.publish import IngestSummary, publish_ingest, records_anything
from servio.steps.read import read_file
from servio.steps.snapshot import (
    SnapshotSummary,
    build_snapshot,
    is_done,
    latest_activity_date,
    published_summary,
)
from servio.steps.stage import stage_file
from servio.steps.staging import StagedFile
from servio.validation import RequiredOnlyValidator

log = logging.getLogger("servio.steps.sequence")
T = TypeVar("T")

ALL: Final = "all"  # ingest every pending file of the raw zone
LATEST: Final = "latest"  # the snapshot of the latest date with activity


@dataclass(frozen=True)
class Plan:
    """What one run does. `ingest`: every pending file (`ALL`), the given paths (an event's),
    or nothing (None). `snapshot`: the latest date (`LATEST`), a date, or none."""

    ingest: Literal["all"] | tuple[str, ...] | None = ALL
    snapshot: Literal["latest"] | date | None = LATEST
    force_snapshot: bool = False  # recompute even when its inputs did not change
    data_docs: bool = True  # render the Data Docs of every published run not shown yet
    maintain: bool = False  # compact, checkpoint and vacuum now (not only when due)
    wait_seconds: float = 0.0  # for another writer to release the lake


EVERYTHING = Plan()  # `servio run`: every pending file, the latest snapshot, the Data Docs


@dataclass
class Outcome:
    """What a run did; `warnings` are failures after the tables were published (the Data
    Docs on a full disk): the tables stand and the next run writes what is missing."""

    run_id: str
    discovered: Discovered
    staged: list[StagedFile]
    ingest: IngestSummary | None = None
    snapshot: SnapshotSummary | None = None
    data_docs_path: str | None = None
    maintained: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    locked: bool = False  # whether the run took the lake lock (it had something to write)


class Executor(Protocol):
    """How each step runs: `call` one step, `map` one step over items (fan-out), yielding
    results in the items' order as they are needed."""

    def call(self, step: Callable[..., T], *args: Any) -> T: ...

    def map(self, step: Callable[..., T], items: Sequence[Any], *args: Any) -> Iterator[T]:
        """`step(*args, item)` for each item."""
        ...


class InProcess:
    """Plain calls in this process; with `threads` > 1, fan-out on a thread pool."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def call(self, step: Callable[..., T], *args: Any) -> T:
        return step(*args)

    def map(self, step: Callable[..., T], items: Sequence[Any], *args: Any) -> Iterator[T]:
        if self.threads <= 1:
            for item in items:
                yield step(*args, item)
            return
        with ThreadPoolExecutor(self.threads, thread_name_prefix="servio-step") as pool:
            futures = [pool.submit(step, *args, item) for item in items]
            for future in futures:
                yield future.result()


IN_PROCESS = InProcess()


class Timed:
    """Another executor, timed: wall seconds spent in each step, by the step's name."""

    def __init__(self, inner: Executor = IN_PROCESS) -> None:
        self.inner = inner
        self.seconds: dict[str, float] = {}

    def call(self, step: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        try:
            return self.inner.call(step, *args)
        finally:
            self._add(step, started)

    def map(self, step: Callable[..., T], items: Sequence[Any], *args: Any) -> Iterator[T]:
        started = time.perf_counter()
        try:
            yield from self.inner.map(step, items, *args)
        finally:
            self._add(step, started)

    def _add(self, step: Callable[..., Any], started: float) -> None:
        name = getattr(step, "__name__", str(step))
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def run(ctx: RunContext, plan: Plan = EVERYTHING, executor: Executor = IN_PROCESS) -> Outcome:
    """One run: the module docstring says in which order and under which lock."""
    ctx.lake.check_reachable()  # before any data is touched
    if plan.ingest == ALL:
        check_raw_root(ctx.settings)
    with ctx.lake.reusing_tables():  # the run's scans bring one open table up to date
        return _run(ctx, plan, executor)


def _run(ctx: RunContext, plan: Plan, executor: Executor) -> Outcome:
    lake = ctx.lake
    discovered = Discovered()
    if plan.ingest is not None:
        paths = None if plan.ingest == ALL else list(plan.ingest)
        discovered = executor.call(discover, ctx, paths)
    outcome = Outcome(ctx.run_id, discovered, [])
    has_work = discovered.files or plan.snapshot is not None or plan.data_docs or plan.maintain
    if not has_work:
        return outcome
    try:
        if discovered.todo:
            lake.claim_staging(ctx.run_id)  # a concurrent run's recover() keeps it
        read: list[StagedFile] = []
        for done, staged in enumerate(executor.map(read_file, discovered.todo, ctx), start=1):
            read.append(staged)
            progress.report("ingest", done, len(discovered.todo))
        # One validator call per source (and batch), not per file; the sources are fanned
        # out like the files (on a Dask cluster, Great Expectations runs on the workers).
        groups = by_source(read)
        checked: dict[int, StagedFile] = {}
        files = [[read[i] for i in group] for group in groups]
        for group, results in zip(groups, executor.map(check_files, files, ctx), strict=True):
            checked.update(zip(group, results, strict=True))
        outcome.staged = [checked[i] for i in range(len(read))]
        with lake.lock(ctx.run_id, plan.wait_seconds):
            outcome.locked = True
            lake.recover()
            # Results are kept before the publish: a kill after it leaves them for the next run.
            keep_validation_results(ctx, outcome.staged)
            if plan.ingest is not None:
                outcome.ingest = executor.call(
                    publish_ingest, ctx, outcome.staged, discovered.duplicates
                )
            if plan.snapshot is not None:
                as_of = None if plan.snapshot == LATEST else plan.snapshot
                progress.report("snapshot", 0, 1)
                outcome.snapshot = executor.call(build_snapshot, ctx, as_of, plan.force_snapshot)
                progress.report("snapshot", 1, 1)
            if plan.maintain:
                outcome.maintained = executor.call(maintain_lake, ctx)
            if plan.data_docs:
                docs = _after_publish(
                    outcome, "Great Expectations Data Docs", executor, build_data_docs, ctx
                )
                outcome.data_docs_path = str(docs) if docs else None
    finally:
        lake.discard_staging(ctx.run_id)
    return outcome


def idle(ctx: RunContext, plan: Plan = EVERYTHING) -> Outcome | None:
    """What `run(ctx, plan)` would do when it would write nothing — no file to stage or to
    record (a refused file whose failure the ledger holds is neither), the snapshot's input
    fingerprint unchanged, no Data Docs left to render, nothing to recover —
    as the Outcome it would return; None when the run has work. Decided with the run's own
    functions (`discover`, `stage_file`, `records_anything`, `latest_activity_date`, `is_done`,
    `has_pending_results`), with no
    lock and without Prefect or Great Expectations: `servio run` answers a run with nothing
    to do in about a second. `run` may still be called afterwards and writes nothing then."""
    lake, settings = ctx.lake, ctx.settings
    if plan.maintain or plan.force_snapshot or plan.ingest not in (ALL, None):
        return None
    lake.check_reachable()
    if plan.ingest == ALL:
        check_raw_root(settings)
    if lake.needs_recovery() or (plan.data_docs and has_pending_results(lake)):
        return None
    discovered = discover(ctx, None) if plan.ingest == ALL else Discovered()
    # Files discovery could not read (refused for their place, deferred for an I/O failure)
    # come back every run; staging them reads nothing, and the publish records each failure
    # once while it does not change: such files alone leave nothing to write.
    if discovered.duplicates or any(problem_of(f) is None for f in discovered.todo):
        return None
    staged = [stage_file(ctx, landed) for landed in discovered.todo]
    if staged and records_anything(ctx, staged):
        return None
    snapshot: SnapshotSummary | None = None
    if plan.snapshot is not None:
        as_of = latest_activity_date(lake, settings) if plan.snapshot == LATEST else plan.snapshot
        if as_of is None:
            snapshot = SnapshotSummary(None, 0, {})
        elif is_done(settings, lake, as_of):
            snapshot = published_summary(lake, as_of)
        else:
            return None
    ingest = None
    if plan.ingest is not None:
        ingest = IngestSummary(0, 0, 0, 0, 0, 0, {}, files_deferred=len(staged))
    return Outcome(ctx.run_id, discovered, staged, ingest=ingest, snapshot=snapshot)


def idle_run(settings: Settings, run_id: str, plan: Plan = EVERYTHING) -> Outcome | None:
    """`idle` for a run not started yet (`servio run`, before Prefect): nothing is validated
    to decide, so no validator is loaded."""
    ctx = RunContext.start(settings, validator=RequiredOnlyValidator(), run_id=run_id)
    return idle(ctx, plan)


def _after_publish(
    outcome: Outcome, what: str, executor: Executor, step: Callable[..., T], *args: Any
) -> T | None:
    """A step after the tables were published: its failure (a full disk) is a warning, not a
    failed run — the tables stand, and the next run writes what is missing."""
    try:
        return executor.call(step, *args)
    except Exception as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        outcome.warnings.append(
            f"the {what} could not be written ({reason}); the tables are published, and the "
            "next run writes it"
        )
        log.warning("%s failed after the publish", what, exc_info=True)
        return None
