"""Kill a run anywhere (SIGKILL: no cleanup), rerun it, and get exactly the tables of a run
that was never interrupted — no row lost or doubled, no half-written file visible, each file
once in the ledger, raw files untouched.

Most kills go through `python -m servio.faults` (the flow's steps without Prefect, and the
GX suite replaced by its `required` checks: these tests exercise publishing, not rules);
two go through the real `servio run`. Kill points are named checkpoints (`servio.faults`)
and seeded random delays. The run after a kill is the same function in the test's process
(`faults_harness.rerun`): only the killed run needs a process of its own.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests import faults_harness as h

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e

KILLED = -signal.SIGKILL


@dataclass
class Reference:
    raw: Path
    first: list[Path]
    rest: list[Path]
    after_first: Path  # curated tree after ingesting only the first batch
    incremental: dict[str, pl.DataFrame]  # first batch, then the rest
    seconds: float  # how long the uninterrupted second run took


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("kill-reference")
    first, rest = h.make_exports(base / "exports")
    config = h.new_lake(base / "lake", first, base / "exports", None)
    h.rerun(config)
    shutil.copytree(base / "lake" / "curated", base / "after_first")
    for path in rest:
        target = base / "lake" / "raw" / path.relative_to(base / "exports")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    started = time.monotonic()
    code, _out, err = h.finish(h.fast_run(config, "--no-rules"))  # timed as killed runs run
    assert code == 0, err
    return Reference(
        base / "exports",
        first,
        rest,
        base / "after_first",
        h.tables(config),
        time.monotonic() - started,
    )


def _second_batch_lake(reference: Reference, where: Path) -> tuple[Path, dict[str, str]]:
    """The lake after the first batch, with the rest just landed: the run to kill."""
    config = h.new_lake(
        where, reference.first + reference.rest, reference.raw, reference.after_first
    )
    return config, h.digest(where / "raw")


def _kill_then_rerun(config: Path, raw: dict[str, str], reference: Reference, **kill: str) -> None:
    code, _, err = h.finish(h.fast_run(config, "--no-rules", **kill))
    assert code == KILLED, f"expected a kill at {kill}, got exit {code}: {err[-2000:]}"
    h.assert_consistent(config, raw)
    h.rerun(config)
    h.assert_consistent(config, raw)
    h.assert_finished(config)
    h.assert_same_tables(config, reference.incremental)


# The ingest publication commits 4 tables (interactions, survey_responses, quarantine,
# ingest_ledger), the snapshot's 4 (customer_quality, _profitability, _segments, state).
NAMED_KILLS = [
    "lock_taken",
    "file_staged:1",
    "file_staged:4",
    "partition_staged:1",
    "partition_staged:6",
    "before_publication_commit:1",
    "after_publication_commit:1",
    "before_table_commit:1",
    "between_table_commits:1",
    "between_table_commits:2",
    "before_table_commit:4",  # the ledger's files are in its folder, not committed
    "between_table_commits:4",  # every table committed, the publication not recorded
    "after_publication_record:1",
    "after_ingest_publish",
    "before_publication_commit:2",  # the snapshot's publication
    "after_publication_commit:2",
    "between_table_commits:6",
    "after_publication_record:2",
    "after_snapshot_publish",
]


@pytest.mark.parametrize("kill_at", NAMED_KILLS)
def test_kill_at_a_checkpoint_then_rerun(
    kill_at: str, reference: Reference, tmp_path: Path
) -> None:
    config, raw = _second_batch_lake(reference, tmp_path)
    _kill_then_rerun(config, raw, reference, SERVIO_KILL_AT=kill_at)


def test_kills_during_recovery_and_again_and_again(reference: Reference, tmp_path: Path) -> None:
    """Killed after the commit, killed again while rolling forward, again at the lock: fine."""
    config, raw = _second_batch_lake(reference, tmp_path)
    # The 2nd run dies rolling forward (2 of 4 tables committed); the 4th run finishes the
    # ingest (skipping the 2 committed tables by their txn) and dies committing the snapshot.
    for kill_at in (
        "after_publication_commit:1",
        "between_table_commits:2",
        "lock_taken",
        "after_publication_commit:1",
    ):
        code, _, err = h.finish(h.fast_run(config, "--no-rules", SERVIO_KILL_AT=kill_at))
        assert code == KILLED, f"{kill_at}: exit {code}: {err[-2000:]}"
        h.assert_consistent(config, raw)
    h.rerun(config)
    h.assert_finished(config)
    h.assert_same_tables(config, reference.incremental)


DELAYS = random.Random(20261127)
TIMED_KILLS = [DELAYS.uniform(0.05, 1.0) for _ in range(6)]  # share of an uninterrupted run


@pytest.mark.parametrize("share", TIMED_KILLS, ids=lambda s: f"{s:.2f}")
def test_kill_at_a_random_moment_then_rerun(
    share: float, reference: Reference, tmp_path: Path
) -> None:
    config, raw = _second_batch_lake(reference, tmp_path)
    proc = h.fast_run(config, "--no-rules")
    time.sleep(share * reference.seconds)
    running = proc.poll() is None
    h.kill_group(proc)
    h.finish(proc)
    print(f"killed after {share * reference.seconds:.1f}s: {'mid-run' if running else 'too late'}")
    h.assert_consistent(config, raw)
    h.rerun(config)
    h.assert_finished(config)
    h.assert_same_tables(config, reference.incremental)


@pytest.fixture(scope="module")
def with_rules(
    reference: Reference, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, pl.DataFrame]:
    """The tables of an uninterrupted second run with the real GX suite (both kills below
    must end in them), in this process like the reruns below (one GX import for the three)."""
    config, _ = _second_batch_lake(reference, tmp_path_factory.mktemp("expected-with-rules"))
    h.rerun(config, rules=True)
    return h.tables(config)


@pytest.mark.parametrize("kill_at", ["after_publication_commit:1", "between_table_commits:2"])
def test_servio_run_killed_then_rerun(
    kill_at: str,
    reference: Reference,
    with_rules: dict[str, pl.DataFrame],
    tmp_path: Path,
    prefect_harness: None,
) -> None:
    """The real command, real GX suite: killed mid-publication, rerun, same as uninterrupted.
    On this test process's Prefect server (a server start each would cost more than the run;
    test_concurrent_runs kills a `servio run` on its own ephemeral server)."""
    expected = with_rules
    config, raw = _second_batch_lake(reference, tmp_path / "killed")
    code, out, err = h.finish(h.servio_run(config, server=True, SERVIO_KILL_AT=kill_at))
    assert code == KILLED, f"exit {code}: {out[-2000:]} {err[-2000:]}"
    h.assert_consistent(config, raw)
    h.rerun(config, rules=True)
    h.assert_finished(config)
    h.assert_same_tables(config, expected)
