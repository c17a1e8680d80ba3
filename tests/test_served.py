"""`servio serve` left running: a burst of files becomes a few bounded runs, served runs log
at INFO to the Prefect UI, and runs killed at random moments heal with serve still up —
every file ingested once, the tables those of one `servio run`, no run left Running."""

from __future__ import annotations

import contextlib
import random
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from servio.config import load_settings
from servio.flows.watch import wait_until
from servio.lake import Lake
from servio.steps.discover import unsettled
from servio.tools.generate import GenerateOptions, generate
from servio.tools.harness import land
from tests.served import Served, flow_runs, run_logs, serving, table

pytestmark = pytest.mark.e2e
INGEST_RUNS = 2  # serve_ingest_runs of the served lake
# Columns a run stamps (when, which run, in which order): not the data.
RUN_COLUMNS = ("run_id", "ingested_at", "source_seq", "quarantined_at")
# A rule's detail names the run's ingestion time ("… the ingestion time + 1 day (<when>)").
INGESTION_TIME = r"ingestion time \+ 1 day \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)"


def _files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.parent != folder
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[Served]:
    with serving(
        tmp_path_factory.mktemp("served"),
        GenerateOptions(customers=120, days=40, seed=19, end_date=date(2026, 11, 20)),
        f"serve_ingest_runs = {INGEST_RUNS}\nserve_catch_up_seconds = 3\n",
    ) as server:
        yield server


def _settled(served: Served) -> bool:
    """Every landed file handled, no run queued or running, the latest snapshot current."""
    from servio.flows.watch import snapshot_behind

    settings = load_settings(served.config)
    lake = Lake(settings.curated_root)
    if unsettled(settings, lake) or snapshot_behind(settings, lake):
        return False
    return not _unfinished()


def _unfinished() -> list[str]:
    """Runs not in a final state and due (a cron run for tomorrow night does not count)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return [
        f"{r.name} ({r.state.name})"
        for r in flow_runs()
        if r.state is not None
        and not r.state.is_final()
        and (r.expected_start_time is None or r.expected_start_time <= now)
    ]


def _comparable(frame: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    if "reason_detail" in frame.columns:
        frame = frame.with_columns(
            pl.col("reason_detail").str.replace_all(INGESTION_TIME, "ingestion time + 1 day")
        )
    return frame.drop([c for c in RUN_COLUMNS if c in frame.columns]).sort(key)


def test_a_burst_becomes_a_few_bounded_runs_that_log_at_info(served: Served) -> None:
    from prefect.client.schemas.objects import StateType

    root = served.root
    exports = root / "exports"
    files = _files(exports)
    assert len(files) >= 6
    before = {r.id for r in flow_runs()}
    running: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # how many ingest runs execute at once, every 0.2 s
        while not stop.is_set():
            with contextlib.suppress(Exception):
                running.append(len(flow_runs(("ingest-file",), (StateType.RUNNING,))))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for relative in files:  # all at once, as a nightly sync does
        land(exports, root / "raw", relative)
    try:
        assert wait_until(lambda: _settled(served), 300, interval=1), served.logs()
    finally:
        stop.set()
        sampler.join()
    runs = [r for r in flow_runs() if r.id not in before]
    ingests = [r for r in runs if r.name.startswith("ingest ")]
    snapshots = [r for r in runs if r.name.startswith("snapshot ")]
    print(f"{len(files)} files → {len(ingests)} ingest runs, {len(snapshots)} snapshot runs")
    assert 1 <= len(ingests) < len(files) / 2, [r.name for r in ingests]
    assert max(running) <= INGEST_RUNS
    assert 1 <= len(snapshots) <= 2, [r.name for r in snapshots]
    assert all(r.state is not None and r.state.is_completed() for r in runs), [
        (r.name, r.state) for r in runs
    ]
    ledger = table(root / "curated", "ingest_ledger")
    assert sorted(ledger["source_file"].to_list()) == files

    # served runs log at INFO: per-file counts and timings, in the Prefect UI
    # Prefect ships a run's logs in batches after the run: wait for them, then look.
    def messages_of(runs: list[Any]) -> list[str]:
        return [log.message for r in runs for log in run_logs(r.id)]

    def counted(messages: list[str]) -> bool:
        return any("rows read" in m and "quarantined" in m for m in messages)

    def dated(messages: list[str]) -> bool:
        return any(m.startswith("snapshot 2026-") for m in messages)

    wait_until(lambda: counted(messages_of(ingests)) and dated(messages_of(snapshots)), 60)
    messages = messages_of(ingests)
    assert counted(messages), messages
    assert any("file(s) in" in m for m in messages), messages
    snapshot_messages = messages_of(snapshots)
    assert dated(snapshot_messages), snapshot_messages
    assert all(r.name == "snapshot 2026-11-20" for r in snapshots), [r.name for r in snapshots]


def test_a_served_run_cancelled_from_the_ui_ends_cancelled_and_its_file_is_ingested_later(
    served: Served,
) -> None:
    """Cancel (what the UI's Cancel button does: Cancelling) an ingest run while it waits for
    the lake lock: `serve` kills the warm process executing it, the run ends Cancelled, a
    fresh warm process takes its place, and a later run ingests the file once."""
    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelling

    root = served.root
    more = root / "to-cancel"
    generate(more, GenerateOptions(customers=20, days=10, seed=29, end_date=date(2026, 11, 28)))
    relative = next(f for f in _files(more) if f.startswith("interactions/"))
    assert wait_until(lambda: len(served.run_processes()) >= INGEST_RUNS + 1, 120)
    warm = {p.pid for p in served.run_processes()}
    before = {r.id for r in flow_runs()}
    lake = Lake(root / "curated")
    with lake.lock("test-holds-the-lake", 60):  # the run stages, then waits for the lock
        name = land(more, root / "raw", relative, name=f"cancel_{Path(relative).name}")

        def waiting() -> list[Any]:
            return [
                r for r in flow_runs(("ingest-file",), (StateType.RUNNING,)) if r.id not in before
            ]

        assert wait_until(lambda: waiting() != [], 120), served.logs()
        run = waiting()[0]
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(), force=True)

            def cancelled() -> bool:
                state = client.read_flow_run(run.id).state
                return state is not None and state.is_cancelled()

            assert wait_until(cancelled, 30), served.logs()
        assert wait_until(lambda: {p.pid for p in served.run_processes()} - warm != set(), 30)
    assert wait_until(lambda: _settled(served), 300, interval=1), served.logs()
    ledger = table(root / "curated", "ingest_ledger")
    assert ledger.filter(pl.col("source_file") == name)["status"].to_list() == ["ingested"]


def test_runs_killed_at_random_heal_with_serve_still_up(served: Served, tmp_path: Path) -> None:
    """Files keep landing while the processes executing runs are SIGKILLed at random moments."""
    from tests.runs import run

    root = served.root
    more = root / "more"
    generate(more, GenerateOptions(customers=90, days=30, seed=23, end_date=date(2026, 11, 28)))
    files = _files(more)
    rng = random.Random(7)
    killed = 0
    pid = served.process.pid if served.process else None

    def maybe_kill() -> None:  # kill whatever run is executing, at random
        nonlocal killed
        victims = served.executing()  # the warm processes executing a run now
        if victims and rng.random() < 0.15:
            with contextlib.suppress(Exception):
                rng.choice(victims).kill()
                killed += 1
        time.sleep(0.25)

    for relative in files:
        land(more, root / "raw", relative, name=f"late_{Path(relative).name}")
        deadline = time.monotonic() + rng.uniform(0.5, 6.0)
        while time.monotonic() < deadline:
            maybe_kill()
    # Every file has landed: the same files through one `servio run`, computed meanwhile
    # (serve heals on its own; the reference reads only its copy of the raw zone).
    reference = tmp_path / "reference"
    shutil.copytree(root / "raw", reference / "raw")
    config = reference / "servio.toml"
    config.write_text(
        f'raw_root = "{reference / "raw"}"\ncurated_root = "{reference / "curated"}"\n'
    )
    computing = ThreadPoolExecutor(1)
    referenced = computing.submit(run, config)
    # A killed warm process is replaced by one that first imports everything (long on a
    # loaded machine): go on killing the runs executing meanwhile (the killed runs' files
    # and the catch-up keep runs coming) until a few have died.
    deadline = time.monotonic() + 180
    while killed < 3 and time.monotonic() < deadline:
        maybe_kill()
    assert killed >= 3, f"only {killed} runs killed: the test proved nothing"
    assert wait_until(lambda: _settled(served), 420, interval=2), served.logs()
    assert served.process is not None and served.process.pid == pid
    assert served.process.poll() is None  # serve was never restarted, and still runs
    curated = root / "curated"
    ledger = table(curated, "ingest_ledger")
    landed = sorted(_files(root / "raw"))
    assert sorted(ledger["source_file"].to_list()) == landed  # each file exactly once
    assert set(ledger["status"]) <= {"ingested", "rejected"}
    crashed = [r for r in flow_runs() if r.state is not None and r.state.is_crashed()]
    print(f"{killed} kills, {len(crashed)} crashed runs, {len(files)} files")
    assert crashed, "no run was reported crashed: the kills did not hit a run"
    assert not _unfinished()
    referenced.result()
    computing.shutdown()
    keys = {
        "interactions": ["interaction_id"],
        "survey_responses": ["response_id"],
        "quarantine": ["source_file", "row_number"],
        "customer_segments": ["as_of_date", "customer_id"],
        "customer_quality": ["as_of_date", "customer_id"],
        "customer_profitability": ["as_of_date", "customer_id"],
    }
    for name, key in keys.items():
        served_table = table(curated, name)
        expected = table(reference / "curated", name)
        if name.startswith("customer_"):  # the reference publishes the latest date only
            latest = expected["as_of_date"].max()
            served_table = served_table.filter(pl.col("as_of_date") == latest)
        assert_frame_equal(
            _comparable(served_table, key), _comparable(expected, key), check_column_order=False
        )
