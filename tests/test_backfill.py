"""Backfill: three dates recomputed in one go equal three single snapshot runs; done dates
are skipped (resumable), --force recomputes, the CLI prints one row per date."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from servio.config import Settings, load_settings
from servio.tools.generate import GenerateOptions, generate

pytestmark = pytest.mark.e2e
DATES = [date(2026, 11, 16), date(2026, 11, 17), date(2026, 11, 18)]
SNAPSHOT_TABLES = ("customer_quality", "customer_profitability", "customer_segments")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """A lake with every sample file ingested and no snapshot yet for DATES. The `required`
    checks, not the GX suite (~1 s a file, and Data Docs that the first snapshot flow would
    render): snapshots are under test here, and every run below reads the same ledger."""
    from servio.steps import sequence
    from tests.runs import REQUIRED_ONLY, run

    root = tmp_path_factory.mktemp("backfill")
    generate(
        root / "raw", GenerateOptions(customers=150, days=21, seed=5, end_date=date(2026, 11, 20))
    )
    settings = _settings(root, root / "curated")
    run(settings, REQUIRED_ONLY, plan=sequence.Plan(snapshot=None, data_docs=False))
    return root


def _settings(root: Path, curated: Path) -> Settings:
    config = curated.parent / f"{curated.name}.toml"
    config.write_text(f'raw_root = "{root / "raw"}"\ncurated_root = "{curated}"\n')
    return load_settings(config)


def _copy(ingested: Path, name: str) -> Path:
    target = ingested / name
    shutil.copytree(ingested / "curated", target)
    return target


def _partition(curated: Path, table: str, as_of: date) -> pl.DataFrame:
    frame = pl.scan_delta(str(curated / table)).filter(pl.col("as_of_date") == as_of).collect()
    assert frame.height > 0, (table, as_of)
    return frame


def test_backfill_equals_single_snapshot_runs(ingested: Path) -> None:
    from servio.flows.snapshot import build_snapshot
    from servio.steps.backfill import PUBLISHED, run_backfill

    single = _copy(ingested, "single")
    _settings(ingested, single)
    for as_of in DATES:  # (the HTML report is not compared: its own tests draw it)
        build_snapshot(as_of=as_of, config_path=str(single.parent / "single.toml"), report=False)
    batch = _copy(ingested, "batch")
    outcomes = run_backfill(_settings(ingested, batch), DATES[0], DATES[-1], parallel=3)
    assert len(outcomes) == (DATES[-1] - DATES[0]).days + 1
    assert {o.outcome for o in outcomes} == {PUBLISHED}
    for table in SNAPSHOT_TABLES:
        for as_of in DATES:
            assert_frame_equal(_partition(batch, table, as_of), _partition(single, table, as_of))


def test_backfill_is_resumable_and_force_recomputes(ingested: Path) -> None:
    from servio.steps.backfill import DONE, PUBLISHED, run_backfill

    curated = _copy(ingested, "resume")
    settings = _settings(ingested, curated)
    first = run_backfill(settings, DATES[0], DATES[1], parallel=2)
    again = run_backfill(settings, DATES[0], DATES[1], parallel=2)
    assert {o.outcome for o in first} == {PUBLISHED}
    assert {o.outcome for o in again} == {DONE}
    forced = run_backfill(settings, DATES[0], DATES[0], parallel=1, force=True)
    assert [o.outcome for o in forced] == [PUBLISHED]


def test_backfill_command_prints_a_row_per_date(ingested: Path) -> None:
    from servio import cli

    curated = _copy(ingested, "cli")
    _settings(ingested, curated)
    config = str(curated.parent / "cli.toml")
    # In this process: the test harness's server (PREFECT_API_URL) would run deployments.
    where = ["--config", config, "--in-process"]
    args = ["backfill", "--from", "2026-11-17", "--to", "2026-11-18", *where]
    result = CliRunner().invoke(cli.app, [*args, "--parallel", "2"])
    assert result.exit_code == 0, result.output
    assert "2026-11-17" in result.output and "2026-11-18" in result.output
    assert "published" in result.output
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert "already done" in result.output
    bad = CliRunner().invoke(cli.app, ["backfill", "--from", "2026-11-18", "--to", "2026-11-17"])
    assert bad.exit_code == 2


def test_backfill_writes_one_run_results_document_that_matches_the_lake(ingested: Path) -> None:
    """One document for the whole range: each date's status, customers and rows per snapshot
    table as the lake holds them; a repeated backfill (every date done) writes none."""
    import json

    from servio import cli
    from servio.steps.backfill import run_backfill
    from tests.run_results import read, valid, written

    curated = _copy(ingested, "results")
    settings = _settings(ingested, curated)
    run_backfill(settings, DATES[0], DATES[0], parallel=1)  # done before: skipped below
    before = written(curated)
    config = str(curated.parent / "results.toml")
    args = ["backfill", "--from", str(DATES[0]), "--to", str(DATES[-1]), "--config", config]
    result = CliRunner().invoke(cli.app, [*args, "--in-process", "--json"])
    assert result.exit_code == 0, result.output
    doc = valid(json.loads(result.stdout))
    assert doc["command"] == "backfill" and doc["status"] == "success"
    assert doc["changed_lake"] is True and doc["error"] is None
    assert doc["backfill"]["where"] == "in_process"
    dates = doc["backfill"]["dates"]
    assert [(d["as_of_date"], d["status"]) for d in dates] == [
        (str(DATES[0]), "already done"),
        (str(DATES[1]), "published"),
        (str(DATES[2]), "published"),
    ]
    for day, entry in zip(DATES, dates, strict=True):
        assert entry["customers"] == _partition(curated, "customer_segments", day).height
        for table in SNAPSHOT_TABLES:
            assert entry["rows"][table] == _partition(curated, table, day).height
        assert (entry["seconds"] > 0) == (entry["status"] == "published")
    assert doc["tables"]["customer_segments"] == sum(d["customers"] for d in dates)
    [new] = [p for p in written(curated) if p not in before]
    assert new.name == f"{doc['run_id']}.json" and "-backfill-" in new.name
    on_disk = read(new)
    assert {k: v for k, v in on_disk.items() if k != "finished_at"} == {
        k: v for k, v in doc.items() if k != "finished_at"
    }

    again = CliRunner().invoke(cli.app, [*args, "--in-process", "--json"])
    assert again.exit_code == 0, again.output
    repeat = valid(json.loads(again.stdout))
    assert {d["status"] for d in repeat["backfill"]["dates"]} == {"already done"}
    assert repeat["changed_lake"] is False
    assert new in written(curated) and len(written(curated)) == len(before) + 1


def test_the_backfill_deployment_flow_writes_its_run_results(ingested: Path) -> None:
    """The `backfill` flow (the served deployment's) writes the same one document."""
    from servio.flows.backfill import backfill
    from tests.run_results import read, written

    curated = _copy(ingested, "flow")
    _settings(ingested, curated)
    rows = backfill(DATES[1], DATES[2], parallel=2, config_path=str(curated.parent / "flow.toml"))
    assert [r["outcome"] for r in rows] == ["published", "published"]
    [doc] = [read(p) for p in written(curated)]
    assert doc["command"] == "backfill" and doc["exit_code"] == 0
    assert doc["backfill"]["where"] == "flow" and doc["changed_lake"] is True
    dates = doc["backfill"]["dates"]
    assert [(d["as_of_date"], d["status"]) for d in dates] == [
        (str(DATES[1]), "published"),
        (str(DATES[2]), "published"),
    ]
    for day, entry in zip(DATES[1:], dates, strict=True):
        assert entry["customers"] == _partition(curated, "customer_segments", day).height
