"""Which customers: the report's lists and `servio export` agree, row for row, with an
independent DuckDB query over the curated Delta tables (files from the Delta log via
`deltalake.DeltaTable(p).file_uris()`, never servio's own reader or catalog).

The lake: generated exports through the pipeline steps (no Prefect) for two as-of dates,
with the SPEC §6 tables published beside them (`test_report_browser.build_sample_lake`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from servio.cli import app
from servio.report.customers import EXPORT_SCHEMA, TOP_CUSTOMERS
from servio.report.summaries import ACTION_ORDER, PROFIT_SEGMENTS, SERVICE_LEVELS
from tests.test_report_browser import AS_OF_DATES, build_sample_lake

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Sample:
    root: Path
    lake: Any
    settings: Any
    config: Path


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    root = tmp_path_factory.mktemp("report-export")
    lake, settings = build_sample_lake(root)
    return Sample(root, lake, settings, root / "servio.toml")


def expected(sample: Sample, as_of: date) -> pl.DataFrame:
    """Every customer of the snapshot, by action (SPEC order) then profit, written in SQL
    from the SPEC's words: the worst dimension is the lowest dimension gap (ties: name),
    the main channel the one with most contacts in (D − window, D] (ties: name)."""
    root = Path(sample.settings.curated_root)

    def source(table: str, partition: str) -> str:
        files = ", ".join(f"'{f}'" for f in DeltaTable(str(root / table)).file_uris())
        return (
            f"read_parquet([{files}], hive_partitioning = true, union_by_name = true, "
            f"hive_types = {{'{partition}': DATE}})"
        )

    dimensions = sample.settings.catalog.dimensions
    gaps = ", ".join(f"{d}_gap AS {d}" for d in dimensions)
    order = " ".join(f"WHEN '{a}' THEN {i}" for i, a in enumerate(ACTION_ORDER))
    sql = f"""
    WITH
    seg AS (SELECT * FROM {source("customer_segments", "as_of_date")} WHERE as_of_date = $d),
    prof AS (SELECT * FROM {source("customer_profitability", "as_of_date")} WHERE as_of_date = $d),
    qual AS (SELECT * FROM {source("customer_quality", "as_of_date")} WHERE as_of_date = $d),
    val AS (SELECT * FROM {source("customer_value", "as_of_date")} WHERE as_of_date = $d),
    contacts AS (
        SELECT customer_id, channel, count(*) AS n
        FROM {source("interactions", "interaction_date")}
        WHERE interaction_date > $d - $window AND interaction_date <= $d
        GROUP BY customer_id, channel),
    main AS (
        SELECT customer_id, channel, n FROM contacts
        QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY n DESC, channel) = 1),
    long AS (
        UNPIVOT (SELECT customer_id, {gaps} FROM qual)
        ON {", ".join(dimensions)} INTO NAME dimension VALUE gap),
    worst AS (
        SELECT customer_id, dimension, gap FROM long WHERE gap IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY gap, dimension) = 1)
    SELECT seg.as_of_date, seg.customer_id, seg.action, seg.profit_segment,
        seg.service_level, seg.rfm_segment, prof.profit_rank, prof.profit, prof.revenue,
        prof.cost_to_serve, qual.service_gap, worst.dimension AS worst_dimension,
        worst.gap AS worst_dimension_gap, main.channel AS main_channel,
        main.n AS main_channel_contacts, qual.n_interactions, qual.n_responses,
        val.p_alive, val.clv, val.value_at_risk
    FROM seg
    LEFT JOIN prof USING (customer_id)
    LEFT JOIN qual USING (customer_id)
    LEFT JOIN worst USING (customer_id)
    LEFT JOIN main USING (customer_id)
    LEFT JOIN val USING (customer_id)
    ORDER BY CASE seg.action {order} END, prof.profit DESC, seg.customer_id
    """
    with duckdb.connect() as con:
        params = {"d": as_of, "window": sample.settings.window_days}
        frame = con.sql(sql, params=params).pl()
    assert isinstance(frame, pl.DataFrame)
    assert list(frame.columns) == list(EXPORT_SCHEMA)
    return frame.cast(dict(EXPORT_SCHEMA))  # type: ignore[arg-type]


def export(sample: Sample, *args: str) -> Path:
    result = CliRunner().invoke(app, ["export", "--config", str(sample.config), *args])
    assert result.exit_code == 0, result.output
    match = re.search(r"to (\S+)\s*$", result.output.replace("\n", ""))
    assert match, result.output
    return Path(match.group(1))


def test_the_sample_snapshot_has_customers_for_every_action_and_value(sample: Sample) -> None:
    """The comparison below means something: every action has customers, several more than
    the report lists, and customer_value was published."""
    frame = expected(sample, AS_OF_DATES[-1])
    counts = dict(frame.group_by("action").len().iter_rows())
    assert set(counts) == set(ACTION_ORDER), counts
    assert max(counts.values()) > TOP_CUSTOMERS
    assert frame["p_alive"].is_not_null().sum() > 0
    assert frame["worst_dimension"].is_not_null().sum() > 0
    assert frame["main_channel"].is_not_null().sum() > 0


@pytest.mark.parametrize("as_of", AS_OF_DATES)
def test_parquet_export_of_every_customer_equals_duckdb(sample: Sample, as_of: date) -> None:
    out = sample.root / f"all-{as_of}.parquet"
    path = export(
        sample, "--action", "all", "--format", "parquet", "--as-of", str(as_of), "--out", str(out)
    )
    assert path == out
    written = pl.read_parquet(out)
    assert written.schema == EXPORT_SCHEMA
    assert_frame_equal(written, expected(sample, as_of))


@pytest.mark.parametrize("action", ACTION_ORDER)
def test_csv_export_of_each_action_equals_duckdb(sample: Sample, action: str) -> None:
    as_of = AS_OF_DATES[-1]
    out = sample.root / f"{action}.csv"
    export(sample, "--action", action, "--out", str(out))  # csv and the latest by default
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(EXPORT_SCHEMA)
    assert not re.search(r"\d[eE][+-]?\d", text), "a number in scientific notation"
    written = pl.read_csv(out, schema=EXPORT_SCHEMA)
    want = expected(sample, as_of).filter(pl.col("action") == action)
    assert want.height > 0
    assert_frame_equal(written, want)


def test_the_default_export_path_names_action_and_date(
    sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = export(sample, "--action", "retain_now", "--format", "parquet")
    assert path == Path(f"servio-retain_now-{AS_OF_DATES[-1]}.parquet")
    schema = pq.ParquetFile(tmp_path / path).schema_arrow
    assert all(not t.num_fields for t in schema.types), "a nested column"
    assert "string_view" not in str(schema) and "large_string" not in str(schema)


class Tables(HTMLParser):
    """The report's customer tables: table id → rows of {header: data-value} (with "key":
    the row's data-key), and each customer card's title."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self.headers: dict[str, list[str]] = {}
        self.titles: dict[str, str] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._card: str | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure" and (a.get("id") or "").startswith("customers-"):
            self._card = a["id"]
        elif tag in ("h3", "th") and (self._card or self._table):
            self._text = []
        elif tag == "table" and (a.get("id") or "").startswith("customers-"):
            self._table = a["id"]
            self.tables[self._table], self.headers[self._table] = [], []
        elif tag == "tr" and self._table and a.get("data-key"):
            self._row = [a["data-key"] or ""]
        elif tag == "td" and self._row is not None:
            self._row.append(a.get("data-value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3" and self._card and self._text is not None:
            self.titles[self._card] = "".join(self._text)
        elif tag == "th" and self._table and self._text is not None:
            self.headers[self._table].append("".join(self._text))
        elif tag == "tr" and self._table and self._row is not None:
            names = ["key", *self.headers[self._table]]
            self.tables[self._table].append(dict(zip(names, self._row, strict=True)))
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "figure":
            self._card = None
        if tag in ("h3", "th"):
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


@pytest.mark.parametrize("as_of", AS_OF_DATES)
def test_the_report_lists_are_the_top_of_the_duckdb_query(sample: Sample, as_of: date) -> None:
    from servio.report import write_report

    page = write_report(
        sample.lake, sample.settings, sample.root / f"report-{as_of}.html", as_of
    ).read_text(encoding="utf-8")
    parser = Tables()
    parser.feed(page)
    want = expected(sample, as_of)
    checked = 0
    for action in ACTION_ORDER:
        group = want.filter(pl.col("action") == action)
        card = f"customers-{action}"
        noun = "customer" if group.height == 1 else "customers"
        assert parser.titles[card].endswith(f": {group.height:,} {noun}")
        if group.is_empty():
            continue
        assert parser.headers[f"{card}-table"][:4] == ["#", "customer", "segment × level", "profit"]
        _assert_list(parser.tables[f"{card}-table"], group, page, action)
        cells = group.partition_by(["profit_segment", "service_level"], as_dict=True)
        for (segment, level), cell in cells.items():
            assert segment in PROFIT_SEGMENTS and level in SERVICE_LEVELS
            if len(cells) > 1:
                table = parser.tables[f"{card}-{segment}-{level}-table"]
                _assert_list(table, cell, page, action)
                checked += 1
    assert checked >= 4  # grow and review_terms span several cells


def _assert_list(shown: list[dict[str, str]], group: pl.DataFrame, page: str, action: str) -> None:
    top = group.head(TOP_CUSTOMERS)
    assert [row["key"] for row in shown] == top["customer_id"].to_list()
    for cells, row in zip(shown, top.iter_rows(named=True), strict=True):
        assert cells["customer"] == row["customer_id"]
        assert Decimal(cells["profit"]) == row["profit"]
        assert cells["service gap"] == _float(row["service_gap"])
        assert cells["worst dimension"] == (row["worst_dimension"] or "")
        assert cells["main channel"] == (row["main_channel"] or "")
        assert cells["p alive"] == _float(row["p_alive"])
    if group.height > TOP_CUSTOMERS:
        assert f"… and {group.height - TOP_CUSTOMERS:,} more:" in page
        assert f"servio export --action {action}" in page


def _float(value: float | None) -> str:
    return "" if value is None else repr(value)
