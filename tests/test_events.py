"""Event-driven operation on a real Prefect server: `servio serve` in a child process, files
dropped into the raw zone, curated tables updated with no direct call of any flow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from servio.config import load_settings
from servio.flows.watch import Watcher, wait_until
from servio.raw.paths import UnsafePath, landed_file, resolve_raw_path
from servio.tools.generate import GenerateOptions
from servio.tools.harness import land
from tests.served import Served, ingested, serving, table

pytestmark = pytest.mark.e2e
# Two generated exports by number (their names end with the dates they cover, which depend on
# the generated data): the first interactions file, and a survey file.
FIRST = "interactions/interactions_001_"
SECOND = "surveys/surveys_004_"


def _export(root: Path, numbered: str) -> str:
    """The path, relative to the exports, of the one generated export named `numbered…`."""
    folder, prefix = numbered.split("/")
    [path] = (root / "exports" / folder).glob(f"{prefix}*")
    return f"{folder}/{path.name}"


# ---------------------------------------------------------------------------------------
# path safety and the watcher's notion of a complete file (no server needed)


def test_paths_outside_the_raw_root_are_refused(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "interactions").mkdir(parents=True)
    (raw / "interactions" / "ok.csv").write_text("a\n1\n")
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    (raw / "interactions" / "link.csv").symlink_to(outside)

    assert resolve_raw_path(raw, "interactions/ok.csv") == (raw / "interactions/ok.csv").resolve()
    assert landed_file(raw, str(raw / "interactions/ok.csv")).relative_path == "interactions/ok.csv"
    for bad in ("../secret.csv", "interactions/../../secret.csv", str(outside), "/etc/passwd"):
        with pytest.raises(UnsafePath, match="refused"):
            resolve_raw_path(raw, bad)
    with pytest.raises(UnsafePath, match="outside the raw root"):
        landed_file(raw, "interactions/link.csv")
    with pytest.raises(UnsafePath, match="still being written"):
        (raw / "interactions" / "big.csv.part").write_text("a\n")
        landed_file(raw, "interactions/big.csv.part")


def test_watcher_emits_each_complete_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    (raw / "interactions").mkdir(parents=True)
    config = tmp_path / "servio.toml"
    config.write_text(f'raw_root = "{raw}"\ncurated_root = "{tmp_path / "curated"}"\n')
    emitted: list[str] = []
    watcher = Watcher(load_settings(config), emit=lambda f: emitted.append(f.relative_path))
    growing = raw / "interactions" / "a.csv"
    growing.write_text("interaction_id\n1\n")
    (raw / "interactions" / "b.csv.part").write_text("in flight\n")
    (raw / "interactions" / "evil.csv").symlink_to(config)  # points outside the raw root

    assert watcher.poll() == []  # first sighting: size not yet known to be stable
    growing.write_text("interaction_id\n1\n2\n")
    watcher.poll()
    assert emitted == []  # still growing
    watcher.poll()
    assert emitted == ["interactions/a.csv"]
    watcher.poll()
    watcher.poll()
    assert emitted == ["interactions/a.csv"]  # once, not once per poll


def test_the_running_watcher_wakes_on_a_change_notification_not_on_its_poll(
    tmp_path: Path,
) -> None:
    """With a poll every 10 minutes, a landed file is emitted within seconds: the watcher
    looks when watchfiles reports a change (and again once it settled). `stop` ends it."""
    raw = tmp_path / "raw"
    (raw / "interactions").mkdir(parents=True)
    config = tmp_path / "servio.toml"
    config.write_text(f'raw_root = "{raw}"\ncurated_root = "{tmp_path / "curated"}"\n')
    emitted: list[str] = []
    watcher = Watcher(
        load_settings(config), poll_seconds=600, emit=lambda f: emitted.append(f.relative_path)
    )
    thread = watcher.start_in_thread()
    landing = raw / "interactions" / "a.csv.part"
    landing.write_text("interaction_id\n1\n")
    landing.rename(raw / "interactions" / "a.csv")
    # Keep the folder changing (in-flight names, never emitted) in case the file landed
    # before the notifications were set up: the first notification after that is a look.
    for n in range(60):
        if emitted:
            break
        (raw / "interactions" / f"noise{n}.tmp").write_text("x")
        time.sleep(0.5)
    watcher.stop()
    thread.join(timeout=30)
    assert emitted == ["interactions/a.csv"]
    assert not thread.is_alive()


def test_recover_keeps_the_staging_of_live_ingests_only(tmp_path: Path) -> None:
    from servio.lake.files import STAGING_OWNER
    from servio.lake.lake import Lake

    lake = Lake(tmp_path)
    live = lake.claim_staging("live-ingest")
    dead = lake.claim_staging("dead-ingest")
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    owner = (dead / STAGING_OWNER).read_text().replace(str(os.getpid()), finished.stdout.strip())
    (dead / STAGING_OWNER).write_text(owner)
    legacy = lake.staging_dir("servio-run-without-owner")
    legacy.mkdir(parents=True)
    lake.recover()
    assert live.exists()
    assert not dead.exists() and not legacy.exists()


# ---------------------------------------------------------------------------------------
# against a Prefect server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[Served]:
    with serving(
        tmp_path_factory.mktemp("served"),
        GenerateOptions(customers=150, days=30, seed=11, end_date=date(2026, 11, 20)),
        # One warm ingest process (each imports servio, Prefect and GX once per serve start);
        # bounded concurrency with two is test_served's.
        "serve_ingest_runs = 1\n",
    ) as server:
        yield server


def _ledger(root: Path) -> pl.DataFrame:
    return table(root / "curated", "ingest_ledger")


def _ingested(root: Path, relative: str) -> bool:
    return ingested(root / "curated", relative)


def _drop(root: Path, relative: str, name: str | None = None) -> str:
    return land(root / "exports", root / "raw", relative, name)


def _snapshot_dates(root: Path) -> list[str]:
    segments = table(root / "curated", "customer_segments")
    return [] if segments.is_empty() else sorted(map(str, segments["as_of_date"].unique()))


def test_a_dropped_file_reaches_the_curated_tables_and_the_snapshot(served: Served) -> None:
    root = served.root
    first = _export(root, FIRST)
    started = time.monotonic()
    _drop(root, first)
    assert wait_until(lambda: _ingested(root, first), 120), served.logs()
    interactions = table(root / "curated", "interactions")
    assert interactions.height > 0
    assert set(interactions["source_file"].unique()) == {first}
    # ingest-file announced new data → build-snapshot ran on its own
    assert wait_until(lambda: _snapshot_dates(root) != [], 120), served.logs()
    print(f"landing → curated + snapshot: {time.monotonic() - started:.1f}s")
    # the warm processes executing these runs keep the deployments' last_polled fresh,
    # which is what `servio backfill` on a server checks before it asks for runs
    from servio.flows.dispatch import BACKFILL, INGEST, SNAPSHOT, check_served

    for deployment in (INGEST, SNAPSHOT, BACKFILL):
        check_served(deployment)


def test_each_served_flow_run_writes_its_run_results(served: Served) -> None:
    """The served ingest-file and build-snapshot runs each write `_servio/runs/<run_id>.json`
    (commands serve-ingest, serve-snapshot), valid against the committed schema."""
    from tests.run_results import read, written

    root = served.root
    first = _export(root, FIRST)
    if not (root / "raw" / first).exists():  # this test alone (another xdist worker)
        _drop(root, first)
    curated = root / "curated"

    def documents(command: str) -> list[dict[str, Any]]:
        return [d for d in map(read, written(curated)) if d["command"] == command]

    def ingested_first() -> bool:
        return any(
            f["path"] == first and f["status"] == "ingested"
            for d in documents("serve-ingest")
            for f in d["files"]
        )

    assert wait_until(ingested_first, 120), served.logs()
    assert wait_until(lambda: documents("serve-snapshot") != [], 120), served.logs()
    [ingest] = [d for d in documents("serve-ingest") if first in str(d["files"])]
    assert ingest["exit_code"] == 0 and ingest["changed_lake"] is True
    assert ingest["tables"]["interactions"] > 0
    assert {"discover", "read_file", "check_files", "publish_ingest"} <= set(ingest["timings"])
    assert ingest["run_id"] in {p.stem for p in written(curated)}
    snapshot = documents("serve-snapshot")[0]
    assert snapshot["exit_code"] in (0, 6) and snapshot["snapshot"] is not None
    assert snapshot["snapshot"]["customers"] > 0
    dates = _snapshot_dates(root)
    assert snapshot["snapshot"]["as_of_date"] in dates


def test_same_file_twice_and_same_event_twice_ingest_once(served: Served) -> None:
    from servio.flows.watch import emit_landed, flush_events

    root = served.root
    first, second = _export(root, FIRST), _export(root, SECOND)
    if not (root / "raw" / first).exists():  # this test alone (another xdist worker)
        _drop(root, first)
    assert wait_until(lambda: _ingested(root, first), 120), served.logs()
    raw = root / "raw"
    landed = landed_file(raw, first)
    emit_landed(landed)  # the very event the watcher already sent (same id)
    emit_landed(landed)
    flush_events()
    (raw / first).touch()  # landed again: new mtime, same bytes
    copy = _drop(root, first, name="interactions_001_copy.csv")  # same content, new name
    _drop(root, second)  # a different file, so we know the server went on working
    assert wait_until(lambda: _ingested(root, second) and _ingested(root, copy), 120), served.logs()
    time.sleep(3)  # give a wrongly re-triggered ingest time to show up
    ledger = _ledger(root)
    assert ledger.filter(pl.col("source_file") == first).height == 1
    assert ledger.filter(pl.col("source_file") == copy)["status"].to_list() == ["duplicate"]
    interactions = table(root / "curated", "interactions")
    assert interactions["interaction_id"].is_unique().all()
    assert set(interactions["source_file"].unique()) == {first}


def test_a_killed_serve_picks_the_file_up_after_restart(served: Served) -> None:
    root = served.root
    third = _export(root, "interactions/interactions_002_")
    staging = root / "curated" / "_servio" / "staging"
    _drop(root, third)
    # kill everything (serve, watcher, flow run) as soon as the ingest is under way
    assert wait_until(lambda: any(staging.glob("*-ingest-*")) or _ingested(root, third), 120)
    served.kill(signal.SIGKILL)
    killed_before_publish = not _ingested(root, third)
    served.start()  # catch-up: the ledger lacks the file, so a fresh run ingests it
    assert wait_until(lambda: _ingested(root, third), 150), served.logs()
    ledger = _ledger(root)
    assert ledger.filter(pl.col("source_file") == third)["status"].to_list() == ["ingested"]
    interactions = table(root / "curated", "interactions")
    assert interactions["interaction_id"].is_unique().all()
    assert third in set(interactions["source_file"])
    print(f"killed before publish: {killed_before_publish}")
