"""Shared fixtures: an isolated Prefect home (no network, no user state) and one
session-wide Prefect test harness for the end-to-end tests."""

from __future__ import annotations

import compileall
import importlib
import os
import random
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Its own Prefect home per test process: pytest-xdist workers must not share one database.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="servio-prefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# Hypothesis' per-example deadline (200 ms) is a timing assertion: on two shared cores an
# example of test_standardise took 1,015 ms and failed. Speed is measured by benchmarks/, not
# by tests; every property keeps its own example count.
settings.register_profile("servio", deadline=None)
settings.load_profile("servio")


def _websockets_draw_from_their_own_random() -> None:
    """Prefect's events client keeps a websocket open from a thread of every process that ran
    a flow, and the `websockets` library draws its ping ids and reconnect delays from the
    global `random`. Hypothesis warns when the global `random` changes while a strategy draws
    ("Do not use the `random` module inside strategies"): it was that thread, now and then,
    not a strategy (found by recording which threads call `random`). The library gets a
    generator of its own, so a warning from Hypothesis means a strategy again."""
    for name in ("websockets.asyncio.connection", "websockets.client"):
        importlib.import_module(name).random = random.Random()  # type: ignore[attr-defined]


_websockets_draw_from_their_own_random()


def pytest_configure(config: pytest.Config) -> None:
    """The repository's modules compiled once, before the workers start: the tests start a few
    hundred Python processes (`servio run`, kill harness, warm processes, Dask workers), and
    where PYTHONDONTWRITEBYTECODE is set (this machine's environment) each would compile every
    servio module it imports again (~0.2 CPU-s). A compiled file is read even then."""
    if hasattr(config, "workerinput") or not sys.dont_write_bytecode:
        return
    root = Path(__file__).resolve().parents[1]
    for package in ("servio", "flows", "transforms", "schemas"):
        compileall.compile_dir(root / package, quiet=1)


# The modules that take longest, longest first: wall seconds on two workers, measured with
# `benchmarks/suite_cpu.py` (kill_anywhere 123, served 114, hostile_corpus 95, dask 82, …,
# backfill 36). pyproject's `--dist loadfile` runs each module whole on one worker (its
# module fixtures once) and hands modules out in collection order as workers free up: the
# long ones start first and the short ones fill in at the end, so the run does not end with
# one worker alone on a long module. The other modules follow in their usual order.
SLOWEST_FIRST = (
    "test_kill_anywhere.py",
    "test_served.py",
    "test_hostile_corpus.py",
    "test_dask.py",
    "test_cli_hostile.py",
    "test_object_storage.py",
    "test_events.py",
    "test_work_pool.py",
    "test_concurrent_readers.py",
    "test_bi_readers.py",
    "test_concurrent_runs.py",
    "test_fuzz_exports.py",
    "test_backfill.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep order


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
