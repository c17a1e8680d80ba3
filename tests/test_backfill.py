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
    """A lake with every sample file ingested and no snapshot yet for DATES."""
    from servio.steps import sequence
    from tests.runs import run

    root = tmp_path_factory.mktemp("backfill")
    generate(
        root / "raw", GenerateOptions(customers=150, days=21, seed=5, end_date=date(2026, 11, 20))
    )
    settings = _settings(root, root / "curated")
    run(settings, plan=sequence.Plan(snapshot=None, data_docs=False))
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
    for as_of in DATES:
        build_snapshot(as_of=as_of, config_path=str(single.parent / "single.toml"))
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
