"""The parts of served operation that need no running `serve`: settings that travel with a
served backfill, Ctrl-C during a backfill, "no data" dates, freshness levels, and the
fail-fast check when no server answers."""

from __future__ import annotations

import threading
import time
from datetime import date
from pathlib import Path

import pytest

from servio.config import Settings
from servio.steps.backfill import (
    CANCELLED,
    NO_DATA,
    PUBLISHED,
    BackfillInterrupted,
    DateOutcome,
    computing_settings,
    outcome_of,
    run_backfill,
    with_computing_settings,
)
from servio.steps.snapshot import SnapshotSummary
from servio.steps.status import ERROR, FRESH, WARN, freshness


def test_computing_settings_travel_and_local_ones_stay(tmp_path: object) -> None:
    analyst = Settings(raw_root="/analyst/raw", service_level_band=0.9, gross_margin_rate=0.3)
    server = Settings(raw_root="/srv/raw", curated_root="/srv/lake", snapshot_buckets=8)
    sent = computing_settings(analyst)
    assert "raw_root" not in sent and "snapshot_buckets" not in sent
    merged = with_computing_settings(server, sent)
    assert merged.service_level_band == 0.9 and merged.gross_margin_rate == 0.3
    assert merged.raw_root == "/srv/raw" and merged.curated_root == "/srv/lake"
    assert merged.snapshot_buckets == 8
    assert with_computing_settings(server, None) is server
    with pytest.raises(ValueError, match="curated_root"):
        with_computing_settings(server, {**sent, "curated_root": "/elsewhere"})


def test_a_date_without_customers_is_no_data_not_published() -> None:
    assert outcome_of(SnapshotSummary(None, 0, {})) == NO_DATA
    assert outcome_of(SnapshotSummary(date(2026, 1, 1), 0, {})) == NO_DATA
    assert outcome_of(SnapshotSummary(date(2026, 1, 1), 3, {}, published=True)) == PUBLISHED


def test_ctrl_c_cancels_the_dates_not_started(tmp_path: object) -> None:
    settings = Settings(raw_root=f"{tmp_path}/raw", curated_root=f"{tmp_path}/lake")
    started: list[date] = []
    lock = threading.Lock()

    def one(settings: Settings, as_of: date, force: bool, wait: float) -> DateOutcome:
        with lock:
            started.append(as_of)
        time.sleep(0.3)
        return DateOutcome(as_of, PUBLISHED, 1)

    def on_done(outcome: DateOutcome) -> None:
        raise KeyboardInterrupt  # what Ctrl-C raises in the main thread

    began = time.monotonic()
    with pytest.raises(BackfillInterrupted) as stopped:
        run_backfill(settings, date(2026, 1, 1), date(2026, 1, 20), 2, True, one, on_done=on_done)
    assert time.monotonic() - began < 3  # not the 20 × 0.3 s / 2 of finishing every date
    outcomes = stopped.value.outcomes
    assert [o.as_of for o in outcomes] == sorted(o.as_of for o in outcomes)
    assert len(outcomes) == 20
    cancelled = [o for o in outcomes if o.outcome == CANCELLED]
    assert len(cancelled) >= 20 - 4
    time.sleep(0.8)  # the dates under way finish; no date that was cancelled ever starts
    assert len(started) <= 4


def test_freshness_levels() -> None:
    settings = Settings(freshness_warn_hours=2, freshness_error_hours=5)
    assert freshness(1.0, settings) == FRESH
    assert freshness(3.0, settings) == WARN
    assert freshness(6.0, settings) == ERROR
    assert freshness(None, settings) == ERROR  # never ingested


def test_backfill_fails_fast_when_no_server_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from servio.flows.dispatch import NotServed, check_served

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    from prefect.settings import PREFECT_API_URL, temporary_settings

    began = time.monotonic()
    with (
        temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}),
        pytest.raises(NotServed, match="no Prefect server answers"),
    ):
        check_served("build-snapshot/servio-snapshot")
    assert time.monotonic() - began < 30


@pytest.mark.e2e
def test_status_shows_pending_files_freshness_and_exits_on_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from servio.cli import app
    from servio.tools.generate import GenerateOptions, generate
    from tests.runs import REQUIRED_ONLY, run

    generate(tmp_path / "raw", GenerateOptions(customers=30, days=10, seed=2))
    config = tmp_path / "servio.toml"
    config.write_text(
        f'raw_root = "{tmp_path / "raw"}"\ncurated_root = "{tmp_path / "curated"}"\n'
        "freshness_warn_hours = 1\nfreshness_error_hours = 2\n"
    )
    run(config, REQUIRED_ONLY)
    late = tmp_path / "raw" / "surveys" / "late.csv"
    first = sorted((tmp_path / "raw" / "surveys").glob("*.csv"))[0]
    late.write_bytes(first.read_bytes() + b"\n")  # new content: pending
    runner = CliRunner()
    fresh = runner.invoke(app, ["status", "--config", str(config)])
    assert fresh.exit_code == 0, fresh.output
    assert "surveys" in fresh.output and "fresh" in fresh.output
    rows = {line.split("│")[1].strip(): line for line in fresh.output.splitlines() if "│" in line}
    assert rows["surveys"].split("│")[2].strip() == "1"  # the late file waits
    assert rows["interactions"].split("│")[2].strip() == "0"
    stale = runner.invoke(
        app, ["status", "--config", str(config)], env={"SERVIO_FRESHNESS_ERROR_HOURS": "0.0001"}
    )
    assert stale.exit_code == 1, stale.output
    assert "error" in stale.output


def test_run_names_say_what_the_run_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ingest run keeps the name its requester gave when it says more (the catch-up's
    `(+N)`), else `ingest <path>`; the snapshot task of the latest date is `snapshot
    latest`, not `snapshot None`. (Prefect reads these from its runtime context.)"""
    import prefect.runtime.flow_run as flow_run
    import prefect.runtime.task_run as task_run

    from servio.flows.ingest_file import _run_name
    from servio.flows.tasks import snapshot_task_name

    monkeypatch.setattr(flow_run, "parameters", {"path": "interactions/a.csv"}, raising=False)
    monkeypatch.setattr(flow_run, "name", "ingest interactions/a.csv (+4)", raising=False)
    assert _run_name() == "ingest interactions/a.csv (+4)"
    monkeypatch.setattr(flow_run, "name", "crimson-otter", raising=False)  # Prefect's own
    assert _run_name() == "ingest interactions/a.csv"
    monkeypatch.setattr(flow_run, "name", "ingest interactions/b.csv (+1)", raising=False)
    assert _run_name() == "ingest interactions/a.csv"  # another file's name is not kept
    monkeypatch.setattr(flow_run, "name", "ingest interactions/a.csv.gz", raising=False)
    assert _run_name() == "ingest interactions/a.csv"

    monkeypatch.setattr(task_run, "parameters", {"as_of": None}, raising=False)
    assert snapshot_task_name() == "snapshot latest"
    monkeypatch.setattr(task_run, "parameters", {"as_of": date(2026, 11, 20)}, raising=False)
    assert snapshot_task_name() == "snapshot 2026-11-20"


def test_prefect_yaml_bounds_ingest_runs_like_servio_serve() -> None:
    """prefect.yaml is static (a work pool's deployments are registered by `prefect deploy`,
    not by servio): its ingest limit must be the default `serve_ingest_runs` that `servio
    serve` applies, and its snapshot limit 1, as in servio/flows/deployments.py."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((root / "prefect.yaml").read_text(encoding="utf-8"))
    limits = {d["name"]: d.get("concurrency_limit") for d in spec["deployments"]}
    default = Settings.model_fields["serve_ingest_runs"].default
    assert limits["servio-ingest"] == {"limit": default, "collision_strategy": "ENQUEUE"}
    assert limits["servio-snapshot"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
