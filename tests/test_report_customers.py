"""Which customers, from literal frames: the customer list behind the report's lists and
`servio export` (tie rules, order, nulls), the files `servio export` writes, its usage
errors, and docs/EXPORT.md. Against a real lake and DuckDB: test_report_export.py."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from servio.cli import app
from servio.report.customers import (
    EXPORT_SCHEMA,
    customer_list,
    main_channels,
    top_lists,
    worst_dimensions,
)
from servio.report.export import export_dictionary, write_export

REPO = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 11, 26)
DIMENSIONS = ("tangibles", "reliability", "responsiveness", "assurance", "empathy")
CHANNELS = ("phone", "chat", "email", "visit", "web")


def _segments(*rows: tuple[str, str, str, str]) -> pl.DataFrame:
    """(customer, action, profit_segment, service_level) rows."""
    return pl.DataFrame(
        [
            {
                "as_of_date": AS_OF,
                "customer_id": c,
                "action": a,
                "profit_segment": s,
                "service_level": level,
                "rfm_segment": "loyal",
            }
            for c, a, s, level in rows
        ]
    )


def _profitability(*rows: tuple[str, int, str]) -> pl.DataFrame:
    """(customer, profit_rank, profit) rows."""
    return pl.DataFrame(
        [
            {
                "customer_id": c,
                "profit_rank": rank,
                "profit": Decimal(p),
                "revenue": Decimal("100.00"),
                "cost_to_serve": Decimal("1.50"),
            }
            for c, rank, p in rows
        ],
        schema_overrides={"profit": pl.Decimal(18, 2), "revenue": pl.Decimal(18, 2)},
    )


def _quality(gaps: dict[str, dict[str, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "customer_id": c,
                "service_gap": -1.0,
                "n_interactions": 3,
                "n_responses": 1,
                **{f"{d}_gap": by_dimension.get(d) for d in DIMENSIONS},
            }
            for c, by_dimension in gaps.items()
        ],
        schema={
            "customer_id": pl.String,
            "service_gap": pl.Float64,
            "n_interactions": pl.Int64,
            "n_responses": pl.Int64,
            **{f"{d}_gap": pl.Float64 for d in DIMENSIONS},
        },
    )


def _contacts(*rows: tuple[str, str]) -> pl.LazyFrame:
    return pl.LazyFrame(
        {"customer_id": [c for c, _ in rows], "channel": [ch for _, ch in rows]},
        schema={"customer_id": pl.String, "channel": pl.String},
    )


def test_main_channel_is_the_most_used_and_ties_go_alphabetically() -> None:
    contacts = _contacts(
        ("A", "phone"), ("A", "phone"), ("A", "chat"),  # phone 2, chat 1
        ("B", "web"), ("B", "phone"), ("B", "web"), ("B", "phone"),  # tie: phone
        ("C", "visit"),
    )  # fmt: skip
    got = main_channels(contacts).collect().sort("customer_id")
    assert got.rows() == [("A", "phone", 2), ("B", "phone", 2), ("C", "visit", 1)]


def test_worst_dimension_is_the_lowest_gap_and_ties_go_alphabetically() -> None:
    quality = _quality(
        {
            "A": {"tangibles": -1.0, "reliability": -2.0, "empathy": 0.5},
            "B": {"tangibles": -1.5, "empathy": -1.5, "assurance": 1.0},  # tie: empathy
            "C": {"tangibles": 0.5, "reliability": 0.25},  # no shortfall: still the lowest
            "D": {},  # no dimension gap at all
        }
    )
    got = worst_dimensions(quality, DIMENSIONS).sort("customer_id")
    assert got.rows() == [
        ("A", "reliability", -2.0),
        ("B", "empathy", -1.5),
        ("C", "reliability", 0.25),
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["A", "B", "C", "D"]), st.sampled_from(CHANNELS)), max_size=40
    )
)
def test_main_channel_matches_counting_by_hand(rows: list[tuple[str, str]]) -> None:
    got = {c: (ch, n) for c, ch, n in main_channels(_contacts(*rows)).collect().rows()}
    by_customer: dict[str, Counter[str]] = {}
    for customer, channel in rows:
        by_customer.setdefault(customer, Counter())[channel] += 1
    want = {}
    for customer, counts in by_customer.items():
        most = max(counts.values())
        want[customer] = (min(ch for ch, n in counts.items() if n == most), most)
    assert got == want


gap = st.one_of(st.none(), st.sampled_from([-2.0, -1.5, -1.0, 0.0, 0.5]))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["A", "B", "C"]), st.tuples(*[gap] * len(DIMENSIONS))))
def test_worst_dimension_matches_a_direct_minimum(
    gaps: dict[str, tuple[float | None, ...]],
) -> None:
    quality = _quality({c: dict(zip(DIMENSIONS, g, strict=True)) for c, g in gaps.items()})
    got = {c: (d, v) for c, d, v in worst_dimensions(quality, DIMENSIONS).rows()}
    want = {}
    for customer, values in gaps.items():
        known = [(v, d) for d, v in zip(DIMENSIONS, values, strict=True) if v is not None]
        if known:
            value, dimension = min(known)  # lowest gap, then the alphabetically first name
            want[customer] = (dimension, value)
    assert got == want


def _list(value: pl.DataFrame | None = None) -> pl.DataFrame:
    segments = _segments(
        ("A", "grow", "core", "met"),
        ("B", "retain_now", "profitable", "below"),
        ("C", "review_terms", "unprofitable", "unknown"),
        ("D", "retain_now", "core", "below"),
        ("E", "grow", "profitable", "exceeded"),
    )
    profitability = _profitability(
        ("A", 1, "90.00"), ("D", 2, "80.00"), ("E", 3, "20.00"), ("B", 4, "10.00"), ("C", 5, "-3.00")
    )  # fmt: skip
    quality = _quality({"A": {"reliability": -1.0}, "B": {}, "C": {}, "D": {"empathy": -2.0}})
    channels = main_channels(_contacts(("A", "chat"), ("D", "phone"), ("D", "phone"))).collect()
    return customer_list(
        segments=segments,
        profitability=profitability,
        quality=quality,
        channels=channels,
        value=value,
        dimensions=DIMENSIONS,
    )


def test_customer_list_is_one_row_per_customer_by_action_then_profit() -> None:
    customers = _list()
    assert customers.schema == EXPORT_SCHEMA
    assert customers.select("customer_id", "action").rows() == [
        ("D", "retain_now"),  # SPEC order of actions, then profit rank
        ("B", "retain_now"),
        ("A", "grow"),
        ("E", "grow"),
        ("C", "review_terms"),
    ]
    d = customers.row(0, named=True)
    assert (d["worst_dimension"], d["main_channel"], d["main_channel_contacts"]) == (
        "empathy",
        "phone",
        2,
    )
    e = customers.filter(pl.col("customer_id") == "E").row(0, named=True)
    assert e["worst_dimension"] is None and e["main_channel"] is None  # no survey, no contact
    assert customers["p_alive"].is_null().all()  # no customer_value for this snapshot


def test_customer_list_takes_the_value_columns_when_given() -> None:
    value = pl.DataFrame(
        {"customer_id": ["A", "D"], "p_alive": [0.25, 0.9], "clv": ["12.34", "5.00"]},
    ).with_columns(
        pl.col("clv").cast(pl.Decimal(18, 2)), pl.lit(Decimal("1.10")).alias("value_at_risk")
    )
    customers = _list(value)
    got = customers.filter(pl.col("p_alive").is_not_null()).select("customer_id", "p_alive")
    assert sorted(got.rows()) == [("A", 0.25), ("D", 0.9)]


def test_top_lists_cut_each_action_and_cell_and_count_the_rest() -> None:
    lists = {whole.action: (whole, cells) for whole, cells in top_lists(_list(), n=1)}
    retain, cells = lists["retain_now"]
    assert (retain.customers, retain.top["customer_id"].to_list(), retain.rest) == (2, ["D"], 1)
    assert [(c.profit_segment, c.service_level, c.customers) for c in cells] == [
        ("core", "below", 1),
        ("profitable", "below", 1),
    ]
    assert lists["ask_feedback"][0].customers == 0 and lists["ask_feedback"][1] == []


def test_csv_export_has_iso_dates_plain_decimals_and_empty_nulls(tmp_path: Path) -> None:
    customers = _list().with_columns(
        pl.when(pl.col("customer_id") == "A").then(1e-7).otherwise(None).alias("p_alive")
    )
    text = write_export(customers, tmp_path / "x.csv", "csv").read_text(encoding="utf-8")
    header, first, *_ = text.splitlines()
    assert header == ",".join(EXPORT_SCHEMA)
    assert first.startswith("2026-11-26,D,retain_now,core,below,loyal,2,80.00,100.00,1.50,")
    a = next(line for line in text.splitlines() if ",A," in line)
    assert a.endswith(",0.0000001,,")  # no exponent; null clv and value_at_risk are empty
    assert not list(tmp_path.glob(".*.tmp"))


def test_parquet_export_is_flat_with_plain_types(tmp_path: Path) -> None:
    path = write_export(_list(), tmp_path / "x.parquet", "parquet")
    schema = pq.ParquetFile(path).schema_arrow
    assert {str(t) for t in schema.types} == {
        "date32[day]",
        "string",
        "int64",
        "double",
        "decimal128(18, 2)",
    }
    assert pl.read_parquet(path).equals(_list())


def test_a_frame_that_is_not_the_export_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an export frame"):
        write_export(_list().drop("clv"), tmp_path / "x.csv", "csv")
    assert not list(tmp_path.iterdir())


def test_the_export_columns_are_documented_as_generated() -> None:
    committed = (REPO / "docs" / "EXPORT.md").read_text(encoding="utf-8")
    assert committed == export_dictionary(), "run `python -m servio.report.export docs/EXPORT.md`"
    for name in EXPORT_SCHEMA:
        assert f"| `{name}` |" in committed


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--action", "keep"], 2, "'keep' is not an action"),
        (["--action", "grow", "--format", "xlsx"], 2, "'xlsx' is not a format"),
        (["--action", "grow", "--as-of", "26/11/2026"], 2, "expected YYYY-MM-DD"),
        (["--action", "grow"], 1, "no snapshot to report on"),
    ],
)
def test_export_usage_errors_exit_without_a_traceback(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    config = tmp_path / "servio.toml"
    config.write_text(f'raw_root = "{tmp_path / "raw"}"\ncurated_root = "{tmp_path / "lake"}"\n')
    result = CliRunner().invoke(app, ["export", "--config", str(config), *args])
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("servio-*"))
