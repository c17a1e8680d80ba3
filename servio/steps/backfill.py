"""Backfills: the snapshots of a range of dates, at most `parallel` at a time and in date
order, each date one run of the sequence — in this process (`snapshot_here`) or as a
deployment run on a Prefect server (`servio.flows.backfill.snapshot_on_server`). Idempotent and
resumable: a date whose published fingerprint matches its inputs is skipped unless forced."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date, timedelta

from servio.config import Settings
from servio.lake import Lake
from servio.steps import sequence
from servio.steps.context import Mapper, RunContext, in_order
from servio.steps.snapshot import SnapshotSummary, is_done

DONE, PUBLISHED, UNCHANGED, FAILED = "already done", "published", "unchanged", "failed"
NO_DATA, CANCELLED = "no data", "cancelled"  # no activity on or before the date; Ctrl-C
# Settings that stay where the work runs: the roots (each machine mounts its own paths), the
# item catalog (a file on that machine), and how the work runs.
LOCAL_KEYS = frozenset({"raw_root", "curated_root", "item_catalog"}) | Settings.EXECUTION_KEYS
# How long a served or backfilled snapshot waits for another writer to release the lake.
DEFAULT_WAIT_SECONDS = 600.0


@dataclass(frozen=True)
class DateOutcome:
    as_of: date
    outcome: str
    customers: int = 0
    seconds: float = 0.0
    detail: str = ""


OneDate = Callable[[Settings, date, bool, float], DateOutcome]


def dates_between(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def snapshot_date(
    settings: Settings,
    as_of: date | None,
    force: bool = False,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    mapper: Mapper[object] = in_order,
) -> SnapshotSummary:
    """One snapshot as a run of the sequence (its own run id and lock); unchanged inputs
    publish nothing unless `force`."""
    ctx = RunContext.start(settings, "snapshot", mapper=mapper)
    plan = sequence.Plan(
        ingest=None,
        snapshot=as_of or sequence.LATEST,
        force_snapshot=force,
        data_docs=False,
        wait_seconds=wait_seconds,
    )
    summary = sequence.run(ctx, plan).snapshot
    assert summary is not None
    return summary


def computing_settings(settings: Settings) -> dict[str, object]:
    """The settings a snapshot's numbers depend on, as JSON values: what a served backfill
    sends with each date, so the server computes with the analyst's settings."""
    return settings.model_dump(mode="json", exclude=set(LOCAL_KEYS))


def with_computing_settings(local: Settings, sent: dict[str, object] | None) -> Settings:
    """`local` (roots, catalog, execution) with the computing settings that were `sent`."""
    if not sent:
        return local
    unknown = set(sent) - set(Settings.model_fields) | set(sent) & LOCAL_KEYS
    if unknown:
        raise ValueError(f"settings that cannot travel: {', '.join(sorted(unknown))}")
    return Settings.model_validate({**local.model_dump(), **sent})


def outcome_of(summary: SnapshotSummary) -> str:
    """published / unchanged, or "no data" when the date has no customer (nothing before it)."""
    if not summary.customers:
        return NO_DATA
    return PUBLISHED if summary.published else UNCHANGED


def snapshot_here(settings: Settings, as_of: date, force: bool, wait: float) -> DateOutcome:
    """One date in this process; a failure is that date's outcome, not the backfill's end."""
    started = time.monotonic()
    try:
        summary = snapshot_date(settings, as_of, force, wait)
    except Exception as exc:  # one bad date must not stop the others; the table shows it
        return DateOutcome(as_of, FAILED, 0, time.monotonic() - started, str(exc))
    # A value model that did not converge is said for the date (its columns are null).
    detail = "; ".join(summary.warnings)
    elapsed = time.monotonic() - started
    return DateOutcome(as_of, outcome_of(summary), summary.customers, elapsed, detail)


def run_backfill(
    settings: Settings,
    start: date,
    end: date,
    parallel: int = 2,
    force: bool = False,
    one: OneDate = snapshot_here,
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
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="servio-backfill")
    futures = {pool.submit(one, settings, d, force, wait_seconds): d for d in todo}
    try:
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            if on_done:
                on_done(outcome)
    except KeyboardInterrupt:
        # Ctrl-C: dates not started are cancelled; the ones under way finish (each is one
        # run of the sequence: stopping it half-way would only leave work for recover()).
        pool.shutdown(wait=False, cancel_futures=True)
        done = {o.as_of for o in outcomes}
        for future, as_of in futures.items():
            if as_of in done:
                continue
            if future.done() and not future.cancelled():
                outcomes.append(future.result())
            else:
                running = not future.cancelled()
                outcomes.append(
                    DateOutcome(as_of, CANCELLED, detail="under way: finishing" if running else "")
                )
        raise BackfillInterrupted(sorted(outcomes, key=lambda o: o.as_of)) from None
    pool.shutdown()
    return sorted(outcomes, key=lambda o: o.as_of)


class BackfillInterrupted(KeyboardInterrupt):
    """Ctrl-C during a backfill: the outcomes so far (cancelled dates included)."""

    def __init__(self, outcomes: list[DateOutcome]) -> None:
        super().__init__("backfill interrupted")
        self.outcomes = outcomes
