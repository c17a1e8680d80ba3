"""The SPEC §6 tables are published with every snapshot: one publication with the customer_*
tables; a value model that did not converge is recorded and said in the run summary; a
change of `value_horizon_days` adds a column (docs/BI.md, "Schema evolution")."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest

from servio.config import Settings, load_settings
from servio.lake.lake import Lake
from servio.schemas.snapshot_tables import customer_value_table, value_tables
from servio.schemas.tables import curated_tables
from servio.steps import sequence
from servio.steps.snapshot import is_done, latest_activity_date
from servio.steps.summary import table_row_counts
from servio.tools.generate import GenerateOptions, generate
from tests.lakes import build_lake
from tests.runs import REQUIRED_ONLY, run

# Whole ingests and snapshots (a generated lake, the real GX suite): the slow set.
pytestmark = pytest.mark.e2e

VALUE = ("customer_value", "value_model", "quality_drivers", "service_levels")


def _config(root: Path) -> Settings:
    config = root / "servio.toml"
    config.write_text(
        f'raw_root = "{(root / "raw").as_posix()}"\n'
        f'curated_root = "{(root / "curated").as_posix()}"\n'
    )
    return load_settings(config)


@pytest.fixture(scope="module")
def lake_365(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Lake]:
    return build_lake(tmp_path_factory.mktemp("value-publish"), copy=False)


def test_the_value_tables_are_published_with_the_snapshot_in_one_publication(
    lake_365: tuple[Settings, Lake],
) -> None:
    settings, lake = lake_365
    as_of = latest_activity_date(lake, settings)
    assert as_of is not None
    tables = curated_tables(settings.catalog, settings.value_horizon_days)
    assert set(VALUE) <= set(tables)
    publications = lake.publications()
    snapshot = publications.filter(pl.col("table_name") == "customer_segments", pl.col("changed"))
    (number,) = snapshot["publication"].to_list()  # one snapshot, one publication
    in_it = publications.filter(pl.col("publication") == number, pl.col("changed"))
    assert set(VALUE) <= set(in_it["table_name"])
    assert publications.filter(pl.col("table_name").is_in(VALUE), pl.col("changed")).height == 4

    customers = lake.scan(tables["customer_segments"]).select("customer_id").collect()
    value = lake.scan(tables["customer_value"]).collect()
    assert value["as_of_date"].unique().to_list() == [as_of]
    assert sorted(value["customer_id"]) == sorted(customers["customer_id"])
    model = lake.scan(tables["value_model"]).collect()
    assert model["model"].to_list() == ["bg_nbd", "gamma_gamma"]
    assert lake.scan(tables["quality_drivers"]).collect().height == len(settings.catalog.dimensions)
    levels = lake.scan(tables["service_levels"]).collect()
    assert levels["channel"].to_list()[-1] == "all"
    counts = table_row_counts(lake, settings)
    assert {name: counts[name] for name in VALUE} == {
        "customer_value": value.height,
        "value_model": 2,
        "quality_drivers": 5,
        "service_levels": levels.height,
    }


def test_the_duckdb_catalog_has_a_view_per_value_table(lake_365: tuple[Settings, Lake]) -> None:
    _, lake = lake_365
    con = duckdb.connect(str(lake.catalog_path), read_only=True)
    try:
        for name in VALUE:
            rows = con.execute(f"SELECT count(*) FROM {name}").fetchone()
            assert rows is not None and rows[0] > 0, name
    finally:
        con.close()


def test_a_value_model_that_does_not_converge_is_recorded_and_said(tmp_path: Path) -> None:
    """One day of exports: nobody has a repeat purchase, so neither model can be fitted."""
    generate(tmp_path / "raw", GenerateOptions(customers=60, days=1, seed=5))
    settings = _config(tmp_path)
    outcome = run(settings, validator=REQUIRED_ONLY)
    summary = outcome.snapshot
    assert summary is not None and summary.published
    lake = Lake(settings.curated_root)
    model = lake.scan(value_tables(365)["value_model"]).collect()
    assert model["converged"].to_list() == [False, False]
    assert len(summary.warnings) == 2
    assert summary.warnings[0].startswith("value model bg_nbd not converged (")
    value = lake.scan(customer_value_table(365)).collect()
    assert value.height > 0 and value["p_alive"].null_count() == value.height

    # A run that leaves the snapshot as it is still says so (read from value_model).
    again = run(settings, validator=REQUIRED_ONLY).snapshot
    assert again is not None and not again.published
    assert [w.split(" of the snapshot")[0] for w in again.warnings] == [
        "value model bg_nbd",
        "value model gamma_gamma",
    ]
    assert all("did not converge" in w for w in again.warnings)


def test_the_default_sample_fits_both_models_and_sees_customers_who_left(tmp_path: Path) -> None:
    """The README's first command (`servio generate` with its defaults, then `servio run`)
    shows CLV: both fits converge on the default sample, and customers who left have a low
    p_alive (the generator's customers leave at a rate of their own, SPEC §6)."""
    generate(tmp_path / "raw", GenerateOptions())
    settings = _config(tmp_path)
    summary = run(settings).snapshot  # GX: the sample's defects (future dates) are quarantined
    assert summary is not None and summary.published
    assert summary.warnings == ()
    lake = Lake(settings.curated_root)
    model = lake.scan(value_tables(365)["value_model"]).collect()
    assert model["converged"].to_list() == [True, True]
    value = lake.scan(customer_value_table(365)).collect()
    buyers = value.filter(pl.col("x").is_not_null())
    assert buyers["p_alive"].null_count() == 0 and buyers["clv"].null_count() == 0
    assert buyers.filter(pl.col("p_alive") < 0.2).height > 0.05 * buyers.height
    assert buyers.filter(pl.col("p_alive") > 0.8).height > 0.2 * buyers.height


def test_servio_run_prints_the_unconverged_model(tmp_path: Path, prefect_harness: None) -> None:
    from typer.testing import CliRunner

    from servio.cli import app

    generate(tmp_path / "raw", GenerateOptions(customers=60, days=1, seed=5))
    _config(tmp_path)
    result = CliRunner().invoke(app, ["run", "--config", str(tmp_path / "servio.toml")])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "warning: value model bg_nbd not converged (" in output
    assert "warning: value model gamma_gamma not converged (" in output


def test_a_new_value_horizon_adds_its_column_and_old_partitions_keep_theirs(
    lake_365: tuple[Settings, Lake],
) -> None:
    settings, lake = lake_365
    latest = latest_activity_date(lake, settings)
    assert latest is not None
    earlier = latest - dt.timedelta(days=1)
    short = settings.model_copy(update={"value_horizon_days": 90})
    assert is_done(settings, lake, latest)
    assert not is_done(short, lake, latest)  # a backfill recomputes every date at the new h
    plan = sequence.Plan(ingest=None, snapshot=earlier, data_docs=False)
    assert run(short, plan=plan).snapshot is not None

    # Delta readers see both columns; each partition fills the one it was scored for.
    delta = pl.scan_delta(str(lake.table_dir(customer_value_table(90)))).collect()
    assert {"expected_purchases_365d", "expected_purchases_90d"} <= set(delta.columns)
    for as_of, filled, empty in (
        (latest, "expected_purchases_365d", "expected_purchases_90d"),
        (earlier, "expected_purchases_90d", "expected_purchases_365d"),
    ):
        rows = delta.filter(pl.col("as_of_date") == as_of)
        assert rows.height > 0
        assert rows[filled].drop_nulls().len() > 0, (as_of, filled)
        assert rows[empty].null_count() == rows.height, (as_of, empty)
    # servio's contract scan has the current horizon's column.
    current = lake.scan(customer_value_table(90)).collect()
    assert "expected_purchases_365d" not in current.columns
    assert current.filter(pl.col("as_of_date") == earlier)["expected_purchases_90d"].len() > 0

    con = duckdb.connect(str(lake.catalog_path), read_only=True)
    try:
        got = con.execute(
            "SELECT as_of_date, count(expected_purchases_365d), count(expected_purchases_90d) "
            "FROM customer_value GROUP BY ALL ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert [row[0] for row in got] == [earlier, latest]
    assert got[0][1] == 0 and got[0][2] > 0
    assert got[1][1] > 0 and got[1][2] == 0
