"""The HTML run report (`servio.report`): built from a small literal lake, checked as text.

Rendering in a real browser is `test_report_browser.py`; here every chart spec is also drawn
to SVG by vl-convert's bundled Vega-Lite, so a broken spec fails without Chromium.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import vl_convert

from servio.config import Settings
from servio.lake.files import TableChange
from servio.lake.lake import Lake
from servio.report import (
    action_matrix,
    headline,
    quarantine_reasons,
    top_profit_share,
    write_report,
)
from servio.schemas.snapshot_tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    customer_quality_table,
)
from servio.schemas.table import CuratedTable
from servio.schemas.tables import INGEST_LEDGER, QUARANTINE

EARLIER, LATEST = date(2026, 10, 31), date(2026, 11, 26)
CHARTS = {
    "whale": "Whale curve",
    "profit-segment": "Profit by profit segment",
    "kaplan": "Profit by Kaplan quadrant",
    "rfm": "RFM segments",
    "gap-dimension": "Service gap by dimension",
    "gap-side": "Technical vs functional gap",
    "action-matrix": "Action matrix: service level × profit segment",
    "trends": "Trends across snapshots",
    "quarantine-reasons": "Quarantined rows by reason",
}
RAW_MARKER = "raw-value-never-shown"

# customer, profit, rank, profit_segment, kaplan_quadrant, rfm_segment, service_level, action
CUSTOMERS = [
    ("C1", 100.0, 1, "core", "passive", "champions", "below", "retain_now"),
    ("C2", 50.0, 2, "core", "carriage_trade", "loyal", "met", "grow"),
    ("C3", 30.0, 3, "profitable", "bargain_basement", "at_risk", "unknown", "ask_feedback"),
    ("C4", 0.0, 4, "unprofitable", None, "no_purchase", "exceeded", "reduce_cost_to_serve"),
    ("C5", -20.0, 5, "unprofitable", "aggressive", "hibernating", "below", "review_terms"),
]


def _frame(table: CuratedTable, rows: Sequence[Mapping[str, object]]) -> pl.DataFrame:
    """Rows naming some columns of `table`; the other columns are null, all cast to its schema."""
    given = pl.DataFrame(rows, infer_schema_length=None)
    return given.with_columns(
        pl.lit(None).alias(name) for name in table.schema if name not in given.columns
    ).select(pl.col(name).cast(dtype) for name, dtype in table.schema.items())


def _snapshot(settings: Settings, as_of: date, profit_shift: float = 0.0) -> list[TableChange]:
    total = sum(c[1] + profit_shift for c in CUSTOMERS)
    profitability, quality, segments = [], [], []
    running = 0.0
    for customer, profit, rank, segment, quadrant, rfm, level, action in CUSTOMERS:
        running += profit + profit_shift
        profitability.append(
            {
                "as_of_date": as_of,
                "customer_id": customer,
                "revenue": max(profit, 0) * 3,
                "margin": max(profit, 0) * 1.5 + 10,
                "cost_to_serve": max(profit, 0) * 0.5 + 10 - profit_shift,
                "profit": profit + profit_shift,
                "profit_rank": rank,
                "cumulative_profit_share": running / total,
                "profit_segment": segment,
                "kaplan_quadrant": quadrant,
                "monetary": max(profit, 0) * 3,
                "rfm_segment": rfm,
            }
        )
        gap = {"below": -1.5, "met": 0.0, "exceeded": 1.0}.get(level)
        dimension_gaps = {f"{d}_gap": gap for d in settings.catalog.dimensions}
        quality.append(
            {
                "as_of_date": as_of,
                "customer_id": customer,
                "n_responses": 0 if gap is None else 2,
                **dimension_gaps,
                "reliability_gap": None if gap is None else gap - 0.5,
                "technical_gap": None if gap is None else gap - 0.5,
                "functional_gap": gap,
                "service_gap": gap,
                "service_level": level,
            }
        )
        segments.append(
            {
                "as_of_date": as_of,
                "customer_id": customer,
                "profit_segment": segment,
                "service_level": level,
                "rfm_segment": rfm,
                "action": action,
            }
        )
    return [
        TableChange(CUSTOMER_PROFITABILITY, {as_of: _frame(CUSTOMER_PROFITABILITY, profitability)}),
        TableChange(
            customer_quality_table(settings.catalog),
            {as_of: _frame(customer_quality_table(settings.catalog), quality)},
        ),
        TableChange(CUSTOMER_SEGMENTS, {as_of: _frame(CUSTOMER_SEGMENTS, segments)}),
    ]


def _ingest_changes() -> list[TableChange]:
    ledger = _frame(
        INGEST_LEDGER,
        [
            {
                "source_seq": 1,
                "source_file": "interactions/a.csv",
                "source": "interactions",
                "status": "ingested",
                "rows_read": 10,
                "rows_valid": 8,
                "rows_quarantined": 2,
            },
            {
                "source_seq": 2,
                "source_file": "surveys/b.csv",
                "source": "surveys",
                "status": "rejected",
                "reason": "missing_column: required column(s) customer_id not in the header",
                "rows_read": 0,
                "rows_valid": 0,
                "rows_quarantined": 0,
            },
        ],
    )
    quarantine = _frame(
        QUARANTINE,
        [
            {
                "source": "interactions",
                "source_file": "interactions/a.csv",
                "row_number": 3,
                "reason_codes": "range:handle_seconds;type:revenue",
                "raw_record": json.dumps({"interaction_id": RAW_MARKER}),
            },
            {
                "source": "interactions",
                "source_file": "interactions/a.csv",
                "row_number": 7,
                "reason_codes": "range:handle_seconds",
            },
            {
                "source": "surveys",
                "source_file": "surveys/b.csv",
                "row_number": None,
                "reason_codes": "file:missing_column",
            },
        ],
    )
    return [
        TableChange(INGEST_LEDGER, {None: ledger}),
        TableChange(
            QUARANTINE,
            {
                source: frame
                for (source,), frame in quarantine.partition_by("source", as_dict=True).items()
            },
        ),
    ]


def _lake(root: Path, snapshots: tuple[date, ...]) -> tuple[Lake, Settings]:
    settings = Settings(raw_root=str(root / "raw"), curated_root=str(root / "curated"))
    lake = Lake(settings.curated_root)
    changes = _ingest_changes()
    for shift, as_of in enumerate(snapshots):
        changes += _snapshot(settings, as_of, profit_shift=5.0 * shift)
    lake.publish("test-run", changes)
    return lake, settings


def _specs(page: str) -> dict[str, dict]:
    line = next(x for x in page.splitlines() if x.startswith("const specs = "))
    return json.loads(line.removeprefix("const specs = ").removesuffix(";"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("report")
    lake, settings = _lake(root, (EARLIER, LATEST))
    path = write_report(lake, settings, root / "out" / "report.html")
    return path, path.read_text(encoding="utf-8")


def test_the_report_is_one_html_file(report: tuple[Path, str]) -> None:
    path, page = report
    assert path.name == "report.html" and path.exists()
    assert page.startswith("<!DOCTYPE html>")
    assert not list(path.parent.glob("*.tmp"))


def test_the_report_loads_nothing_from_the_network(report: tuple[Path, str]) -> None:
    _, page = report
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"<link[^>]*stylesheet", page, re.IGNORECASE)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", page, re.IGNORECASE)
    assert "window.vegaEmbed" in page  # the charting library is inline


def test_the_report_has_every_chart_with_its_title(report: tuple[Path, str]) -> None:
    _, page = report
    for key, title in CHARTS.items():
        assert f'id="vis-{key}"' in page, key
        assert f"<h3>{title}</h3>" in page, title
    assert set(_specs(page)) == set(CHARTS)


def test_every_chart_spec_draws_with_vega_lite(report: tuple[Path, str]) -> None:
    _, page = report
    for key, spec in _specs(page).items():
        svg = vl_convert.vegalite_to_svg(spec)
        assert "<svg" in svg and "<path" in svg, key


def test_the_report_names_its_as_of_date_and_headline(report: tuple[Path, str]) -> None:
    _, page = report
    assert "<title>servio report — as of 2026-11-26</title>" in page
    assert 'content="2026-11-26"' in page
    # latest snapshot: profits 105, 55, 35, 5, −15 → €185; top 20 % = C1 = 105 / 185
    assert "€185" in page
    assert "57%" in page
    assert "customers (50% of rated)" in page  # 2 below of 4 rated


def test_the_ledger_and_quarantine_reasons_are_reported(report: tuple[Path, str]) -> None:
    _, page = report
    assert "surveys/b.csv" in page and "missing_column" in page
    spec = _specs(page)["quarantine-reasons"]
    values = {(v["reason_code"], v["source"]): v["rows"] for v in _values(spec)}
    assert values == {
        ("range:handle_seconds", "interactions"): 2,
        ("type:revenue", "interactions"): 1,
        ("file:missing_column", "surveys"): 1,
    }


def test_no_raw_record_reaches_the_report(report: tuple[Path, str]) -> None:
    _, page = report
    assert RAW_MARKER not in page


def test_an_older_snapshot_can_be_reported(tmp_path: Path) -> None:
    lake, settings = _lake(tmp_path, (EARLIER, LATEST))
    page = write_report(lake, settings, tmp_path / "r.html", as_of=EARLIER).read_text()
    assert "as of 2026-10-31" in page
    assert "€160" in page  # earlier snapshot: profits 100, 50, 30, 0, −20
    assert 'id="vis-trends"' not in page  # only one snapshot up to that date
    assert "Only one snapshot up to 2026-10-31" in page


def test_the_report_reads_the_latest_whole_publication(tmp_path: Path) -> None:
    """A publication of a newer snapshot that died between two table commits (segments
    committed, profitability not): the report still draws the last whole publication."""
    from servio import faults

    lake, settings = _lake(tmp_path, (EARLIER,))

    def die_after_the_first_commit() -> None:
        raise RuntimeError("killed")

    with (
        faults.inject("between_table_commits", die_after_the_first_commit),
        pytest.raises(RuntimeError, match="killed"),
    ):
        lake.publish("partial", _snapshot(settings, LATEST)[::-1])  # segments first
    assert LATEST.isoformat() in lake.partitions(CUSTOMER_SEGMENTS)  # the latest version has it
    page = write_report(lake, settings, tmp_path / "r.html").read_text()
    assert "as of 2026-10-31" in page and "as of 2026-11-26" not in page


def test_a_data_docs_index_is_linked_relatively(tmp_path: Path) -> None:
    lake, settings = _lake(tmp_path, (LATEST,))
    without = write_report(lake, settings, tmp_path / "a.html").read_text()
    assert "No Great Expectations Data Docs have been built yet" in without
    lake.data_docs_dir.mkdir(parents=True)
    lake.data_docs_index.write_text("<html></html>")
    page = write_report(lake, settings, tmp_path / "out" / "b.html").read_text()
    assert 'href="../curated/_servio/data_docs/servio-validations.html"' in page


def test_an_empty_lake_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(curated_root=str(tmp_path / "curated"))
    with pytest.raises(ValueError, match=r"no snapshot to report on .* run `servio run` first"):
        write_report(Lake(settings.curated_root), settings, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_a_missing_snapshot_names_the_published_ones(tmp_path: Path) -> None:
    lake, settings = _lake(tmp_path, (EARLIER, LATEST))
    with pytest.raises(ValueError, match=r"no snapshot as of 2026-11-01.*2026-10-31, 2026-11-26"):
        write_report(lake, settings, tmp_path / "r.html", as_of=date(2026, 11, 1))


def test_which_customers_lists_every_action_with_its_customers(
    report: tuple[Path, str],
) -> None:
    _, page = report
    assert '<section id="customers"><h2>Which customers</h2>' in page
    # latest snapshot: C1 retain_now (core × below), C2 grow, C3 ask_feedback, C4 reduce, C5 review
    for customer, action in (("C1", "retain_now"), ("C2", "grow"), ("C5", "review_terms")):
        card = page.split(f'id="customers-{action}"', 1)[1].split("</figure>", 1)[0]
        assert ": 1 customer</h3>" in card
        assert f'<tr data-key="{customer}">' in card
    retain = page.split('id="customers-retain_now-table"', 1)[1].split("</table>", 1)[0]
    assert 'data-value="105.00">€105.00</td>' in retain  # profit 100 + 5 in the latest snapshot
    assert "reliability (−2.00)" in retain  # the lowest of its dimension gaps (−1.5 − 0.5)
    assert "main channel" in retain and "p alive" not in retain  # no §6 table published


def test_customer_ids_are_escaped(tmp_path: Path) -> None:
    """Ids are data: a hostile one is shown as text, never as markup."""
    lake, settings = _lake(tmp_path, (LATEST,))
    hostile = '<b id="x">C&1</b>'
    changes = [
        TableChange(
            change.table,
            {
                key: frame.with_columns(pl.col("customer_id").replace("C1", hostile))
                for key, frame in change.partitions.items()
                if isinstance(frame, pl.DataFrame)
            },
        )
        for change in _snapshot(settings, LATEST)
    ]
    lake.publish("hostile", changes)
    page = write_report(lake, settings, tmp_path / "r.html").read_text()
    assert hostile not in page
    assert "&lt;b id=&#34;x&#34;&gt;C&amp;1&lt;/b&gt;" in page


def test_top_profit_share_is_the_top_fifth_of_customers_by_rank() -> None:
    frame = pl.DataFrame(
        {"profit": [40.0, 30.0, 20.0, 10.0, 0.0, -5.0], "profit_rank": range(1, 7)}
    )
    assert top_profit_share(frame) == pytest.approx((40 + 30) / 95)  # ceil(0.2 × 6) = 2


def test_top_profit_share_is_undefined_without_positive_total_profit() -> None:
    frame = pl.DataFrame({"profit": [5.0, -5.0], "profit_rank": [1, 2]})
    assert top_profit_share(frame) is None


def test_headline_counts_customers_below_among_the_rated() -> None:
    profitability = pl.DataFrame({"profit": [10.0, 5.0, -1.0], "profit_rank": [1, 2, 3]})
    segments = pl.DataFrame({"service_level": ["below", "unknown", "met"]})
    head = headline(profitability.with_columns(pl.col("profit").cast(pl.Decimal(18, 2))), segments)
    assert (head.customers, str(head.total_profit), head.below, head.rated) == (3, "14.00", 1, 2)


def test_action_matrix_has_every_cell_even_when_empty() -> None:
    profitability = pl.DataFrame({"customer_id": ["A", "B"], "profit": [8.0, 2.0]})
    segments = pl.DataFrame(
        {
            "customer_id": ["A", "B"],
            "profit_segment": ["core", "core"],
            "service_level": ["below", "below"],
        }
    )
    matrix = action_matrix(profitability, segments)
    assert matrix.height == 12  # 3 profit segments × 4 service levels
    cell = matrix.filter(pl.col("profit_segment") == "core", pl.col("service_level") == "below")
    assert cell.select("action", "customers", "profit").row(0) == ("retain_now", 2, 10.0)
    assert matrix.filter(pl.col("customers") == 0).height == 11


def test_quarantine_reasons_split_the_codes() -> None:
    quarantine = pl.DataFrame(
        {"source": ["surveys", "surveys"], "reason_codes": ["range:nps;type:csat", "range:nps"]}
    )
    counts = quarantine_reasons(quarantine)
    assert counts.select("reason_code", "rows").rows() == [("range:nps", 2), ("type:csat", 1)]


def _values(spec: dict) -> list[dict]:
    datasets = spec.get("datasets", {})
    name = spec["data"]["name"]
    return datasets[name]


def test_money_is_whole_units_in_summaries_and_cents_for_a_customer() -> None:
    from servio.report.words import format_money

    assert format_money(Decimal("-0.30"), "EUR") == "−€0"
    assert format_money(Decimal("-0.30"), "EUR", cents=True) == "−€0.30"
    assert format_money(Decimal("1234.5"), "CHF", cents=True) == "1,234.50 CHF"
    assert format_money(1234.5, "USD") == "$1,234"  # half-even: 1234.5 → 1234
