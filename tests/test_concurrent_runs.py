"""Two runs on one lake: the second is refused (exit 3, "busy") or waits (`--wait`); data is
never doubled; a lock left by a SIGKILLed run is taken over by the next run."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import polars as pl
import pytest

from servio.lake.lake import Lake
from servio.schemas.tables import INGEST_LEDGER, INTERACTIONS
from tests import faults_harness as h

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e

BUSY = 3


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    base = tmp_path_factory.mktemp("concurrent-exports")
    first, rest = h.make_exports(base)
    return base, first + rest


def _wait_for(condition, seconds: float, proc) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _ledger_published(config: Path) -> bool:
    log = config.parent / "curated" / "ingest_ledger" / "_delta_log"
    return (log / "00000000000000000001.json").exists()  # its first commit after creation


def _assert_not_doubled(config: Path, files: int) -> None:
    lake = Lake(config.parent / "curated")
    ledger = lake.scan(INGEST_LEDGER).collect()
    assert ledger.height == files
    assert ledger["sha256"].is_unique().all()
    interactions = lake.scan(INTERACTIONS).collect()
    assert interactions["interaction_id"].is_unique().all()
    assert interactions.height == ledger.filter(source="interactions")["rows_curated"].sum()
    assert not (config.parent / "curated" / "_servio" / "run.lock").exists()


def test_a_second_run_is_refused_or_waits(exports: tuple[Path, list[Path]], tmp_path: Path) -> None:
    raw_source, files = exports
    config = h.new_lake(tmp_path, files, raw_source, None)
    holder = h.fast_run(config, "--no-rules", SERVIO_PAUSE_AT="after_ingest_publish:6")
    _wait_for(lambda: _ledger_published(config), 120, holder)
    code, _, err = h.finish(h.fast_run(config, "--no-rules"))
    assert code == BUSY
    assert "is busy" in err and "try again" in err
    waiter = h.fast_run(config, "--no-rules", "--wait", "120")
    assert h.finish(holder)[0] == 0
    code, out, err = h.finish(waiter)
    assert code == 0, err
    assert "'files_ingested': 0" in out  # the holder did the work; nothing twice
    _assert_not_doubled(config, len(files))


def test_two_servio_runs_then_the_lock_of_a_killed_run_is_taken_over(
    exports: tuple[Path, list[Path]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw_source, files = exports
    config = h.new_lake(tmp_path, files, raw_source, None)
    first = h.servio_run(config, SERVIO_PAUSE_AT="after_ingest_publish:600")
    try:
        _wait_for(lambda: _ledger_published(config), 400, first)
        code, out, err = h.finish(h.servio_run(config))
        assert code == BUSY, out + err
        assert "is busy" in " ".join(out.split()), out
    finally:
        h.kill_group(first)  # SIGKILL while it holds the lock
        h.finish(first)
    lock = config.parent / "curated" / "_servio" / "run.lock"
    assert lock.exists(), "the killed run's lock is left behind"
    # The next run (the GX suite, as `fast_run(config)` runs it) in this process: a process
    # of its own would pay Great Expectations' import again; the killed one was real.
    with caplog.at_level(logging.WARNING, logger="servio.lake"):
        h.rerun(config, rules=True)
    assert "taking over a stale lock" in caplog.text
    _assert_not_doubled(config, len(files))
    segments = pl.read_delta(str(config.parent / "curated" / "customer_segments"))
    assert segments.height > 0
