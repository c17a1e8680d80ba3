"""generate → `servio-run` flow (through Prefect) → read back with DuckDB, through the
catalog file `servio.duckdb` the run wrote (one view per table, the latest publication)."""

from __future__ import annotations

import hashlib
import html
import re
import shutil
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from servio.schemas.raw import INTERACTIONS_RAW
from servio.tools.generate import GenerateOptions, GenerateReport, generate

pytestmark = pytest.mark.e2e


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def lake(
    tmp_path_factory: pytest.TempPathFactory, prefect_harness: None
) -> tuple[Path, GenerateReport, object]:
    from servio.flows.run import run_pipeline

    root = tmp_path_factory.mktemp("lake")
    report = generate(
        root / "raw", GenerateOptions(customers=300, days=90, seed=7, end_date=date(2026, 11, 20))
    )
    config = root / "servio.toml"
    config.write_text(f'raw_root = "{root / "raw"}"\ncurated_root = "{root / "curated"}"\n')
    summary = run_pipeline(str(config))
    return root, report, summary


def _sql(root: Path, query: str) -> list[tuple]:
    with duckdb.connect(str(root / "curated" / "servio.duckdb"), read_only=True) as con:
        return con.execute(query).fetchall()


def test_curated_interactions_are_the_distinct_valid_ids(lake) -> None:
    root, report, _ = lake
    [(count,)] = _sql(root, "select count(*) from interactions")
    [(distinct,)] = _sql(
        root,
        "select count(distinct interaction_id) from interactions",
    )
    assert count == distinct == report.valid_interaction_ids


def test_curated_responses_are_the_distinct_valid_ids(lake) -> None:
    root, report, _ = lake
    [(count,)] = _sql(root, "select count(*) from survey_responses")
    assert count == report.valid_response_ids


def test_every_row_is_curated_superseded_or_quarantined(lake) -> None:
    root, report, _ = lake
    ledger = pl.read_delta(str(root / "curated" / "ingest_ledger"))
    assert (ledger["rows_read"] == ledger["rows_valid"] + ledger["rows_quarantined"]).all()
    assert (ledger["rows_valid"] == ledger["rows_curated"] + ledger["rows_superseded"]).all()
    assert ledger["rows_read"].sum() == report.interaction_rows + report.survey_rows
    [(quarantined,)] = _sql(
        root,
        "select count(*) from quarantine where row_number is not null",
    )
    assert (
        quarantined
        == ledger["rows_quarantined"].sum()
        == report.bad_interaction_rows + report.bad_survey_rows
    )


def test_snapshot_tables_have_one_row_per_customer_and_action(lake) -> None:
    root, _, summary = lake
    rows = _sql(
        root,
        "select as_of_date, count(*), count(distinct customer_id), count(action) "
        "from customer_segments group by 1",
    )
    assert len(rows) == 1
    as_of, n, distinct, with_action = rows[0]
    assert as_of == summary.snapshot.as_of_date
    assert n == distinct == with_action > 0


def test_no_personal_data_reaches_any_curated_file(lake) -> None:
    root, _, _ = lake
    raw_emails = set()
    for path in (root / "raw" / "interactions").glob("*.parquet"):
        raw_emails |= set(pl.read_parquet(path)["email"].drop_nulls().to_list())
    assert raw_emails, "the generator should fill personal columns"
    for path in (p for p in (root / "curated").rglob("*.parquet") if p.is_file()):
        frame = pl.read_parquet(path)
        assert not set(frame.columns) & set(INTERACTIONS_RAW.personal_columns), path
        text = frame.select(pl.col(pl.String)).unpivot(value_name="_text")["_text"].drop_nulls()
        assert not text.is_in(list(raw_emails)).any(), path
        assert not text.str.contains("@", literal=True).any(), path


def test_the_run_draws_the_html_report(lake) -> None:
    _, _, summary = lake
    assert summary.report_path is not None
    text = Path(summary.report_path).read_text(encoding="utf-8")
    assert str(summary.snapshot.as_of_date) in text


def test_the_run_builds_data_docs_for_every_validated_file(lake) -> None:
    _, _, summary = lake
    assert summary.data_docs_path is not None
    index = Path(summary.data_docs_path)
    assert (index.parent / "index.html").exists()  # GX's own home page
    listing = index.read_text(encoding="utf-8")  # servio's offline list of result pages
    for staged in summary.staged:
        assert staged.landed.relative_path.rsplit("/", 1)[-1] in listing
    for link in re.findall(r'href="(validations/[^"]+)"', listing):
        assert (index.parent / html.unescape(link)).exists()


def test_a_second_run_ingests_nothing_and_changes_no_file(lake) -> None:
    from servio.flows.run import run_pipeline

    root, _, _ = lake
    before = _tree_digest(root / "curated")
    again = run_pipeline(str(root / "servio.toml"))
    assert again.ingest.files_ingested == 0
    assert again.files_seen == 0
    assert _tree_digest(root / "curated") == before


def test_same_content_under_another_name_is_not_ingested_twice(lake) -> None:
    from servio.flows.run import run_pipeline

    root, _, _ = lake
    source = sorted((root / "raw" / "interactions").glob("*.csv"))[0]
    shutil.copy(source, source.with_name("copy of " + source.name))
    [(before,)] = _sql(root, "select count(*) from interactions")
    again = run_pipeline(str(root / "servio.toml"))
    assert again.ingest.files_ingested == 0
    assert again.ingest.files_duplicate == 1
    [(after,)] = _sql(root, "select count(*) from interactions")
    assert after == before
    ledger = pl.read_delta(str(root / "curated" / "ingest_ledger"))
    copy = ledger.filter(pl.col("source_file").str.contains("copy of"))
    assert copy["status"].to_list() == ["duplicate"]
    assert copy["duplicate_of"].to_list() == [f"interactions/{source.name}"]


def test_the_run_publishes_the_value_tables_and_the_report_shows_them(lake) -> None:
    """SPEC §6: `servio run` publishes customer_value, value_model, quality_drivers and
    service_levels for the snapshot's date, and the report draws their sections."""
    root, _, summary = lake
    as_of = summary.snapshot.as_of_date
    [(customers,)] = _sql(root, "select count(*) from customer_segments")
    expected = {
        "customer_value": customers,
        "value_model": 2,
        "quality_drivers": 5,
        "service_levels": 5,  # phone, chat, email, visit (web has no target), all
    }
    for table, rows in expected.items():
        assert _sql(root, f"select count(*), min(as_of_date), max(as_of_date) from {table}") == [
            (rows, as_of, as_of)
        ], table
    converged = _sql(root, "select model, converged from value_model order by model")
    assert converged == [("bg_nbd", True), ("gamma_gamma", True)]
    assert summary.snapshot.warnings == ()
    text = Path(summary.report_path).read_text(encoding="utf-8")
    assert "not computed for this snapshot" not in text
    for chart in ("clv", "p-alive", "drivers", "service-levels"):
        assert f'id="vis-{chart}"' in text, chart
    assert 'id="value-at-risk-table"' in text and 'id="drivers-table"' in text


def test_task_runs_are_named_after_what_they_do(lake) -> None:
    """The snapshot task of a `servio run` is `snapshot latest` (its as_of is None: the
    latest date with activity), never `snapshot None`; each file's read names the file."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        names = {t.name for t in client.read_task_runs(limit=200)}
    assert "snapshot latest" in names, sorted(names)
    assert not any("None" in name for name in names), sorted(names)
    assert any(name.startswith("read interactions/") for name in names), sorted(names)
