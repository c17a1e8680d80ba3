"""customer_segments: literal given → expected frames, one behaviour each."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from servio.schemas.catalog import load_catalog
from servio.schemas.snapshot_tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    customer_quality_table,
)
from servio.transforms.segments import ACTIONS, customer_segments

AS_OF = dt.date(2026, 11, 27)
QUALITY_SCHEMA = customer_quality_table(load_catalog()).schema
PROFIT_SEGMENTS = ("core", "profitable", "unprofitable")
SERVICE_LEVELS = ("below", "met", "exceeded", "unknown")


def profitability(*rows: tuple[str, str, str], as_of: dt.date = AS_OF) -> pl.LazyFrame:
    """(customer_id, profit_segment, rfm_segment) rows of a customer_profitability snapshot."""
    return pl.LazyFrame(
        [
            {"as_of_date": as_of, "customer_id": c, "profit_segment": p, "rfm_segment": r}
            for c, p, r in rows
        ],
        schema=CUSTOMER_PROFITABILITY.schema,
    )


def quality(*rows: tuple[str, str], as_of: dt.date = AS_OF) -> pl.LazyFrame:
    """(customer_id, service_level) rows of a customer_quality snapshot."""
    return pl.LazyFrame(
        [{"as_of_date": as_of, "customer_id": c, "service_level": s} for c, s in rows],
        schema=QUALITY_SCHEMA,
    )


def segments(**columns: list[Any]) -> pl.DataFrame:
    return pl.DataFrame(columns, schema={name: CUSTOMER_SEGMENTS.schema[name] for name in columns})


def test_output_has_the_curated_schema_in_order() -> None:
    lazy = customer_segments(profitability(("a", "core", "new")), quality(("a", "met")))
    assert lazy.collect_schema() == CUSTOMER_SEGMENTS.schema
    assert_frame_equal(
        lazy.collect(),
        segments(
            as_of_date=[AS_OF],
            customer_id=["a"],
            profit_segment=["core"],
            service_level=["met"],
            rfm_segment=["new"],
            action=["grow"],
        ),
    )


def test_every_row_of_the_action_table() -> None:
    # profit_segment × service_level, the action typed out from SPEC §4.2
    cases = [
        ("core", "below", "retain_now"),
        ("core", "met", "grow"),
        ("core", "exceeded", "grow"),
        ("core", "unknown", "ask_feedback"),
        ("profitable", "below", "retain_now"),
        ("profitable", "met", "grow"),
        ("profitable", "exceeded", "grow"),
        ("profitable", "unknown", "ask_feedback"),
        ("unprofitable", "below", "review_terms"),
        ("unprofitable", "met", "review_terms"),
        ("unprofitable", "exceeded", "reduce_cost_to_serve"),
        ("unprofitable", "unknown", "review_terms"),
    ]
    ids = [f"c{n:02d}" for n in range(len(cases))]
    result = customer_segments(
        profitability(*((i, p, "loyal") for i, (p, _, _) in zip(ids, cases, strict=True))),
        quality(*((i, s) for i, (_, s, _) in zip(ids, cases, strict=True))),
    ).collect()
    assert_frame_equal(
        result.select("customer_id", "profit_segment", "service_level", "action"),
        segments(
            customer_id=ids,
            profit_segment=[p for p, _, _ in cases],
            service_level=[s for _, s, _ in cases],
            action=[a for _, _, a in cases],
        ),
    )


def test_the_action_table_covers_each_pair_exactly_once() -> None:
    for profit_segment in PROFIT_SEGMENTS:
        for level in SERVICE_LEVELS:
            matches = [a for p, s, a in ACTIONS if profit_segment in p and level in s]
            assert len(matches) == 1, (profit_segment, level, matches)


def test_a_customer_missing_from_the_quality_snapshot_has_an_unknown_service_level() -> None:
    result = customer_segments(
        profitability(("a", "core", "champions"), ("b", "unprofitable", "no_purchase")),
        quality(),
    ).collect()
    assert_frame_equal(
        result.select("customer_id", "service_level", "action"),
        segments(
            customer_id=["a", "b"],
            service_level=["unknown", "unknown"],
            action=["ask_feedback", "review_terms"],
        ),
    )


def test_quality_of_another_as_of_date_is_not_used() -> None:
    result = customer_segments(
        profitability(("a", "core", "loyal")),
        pl.concat(
            [quality(("a", "below"), as_of=AS_OF - dt.timedelta(days=1)), quality(("a", "met"))]
        ),
    ).collect()
    assert_frame_equal(
        result.select("as_of_date", "service_level", "action"),
        segments(as_of_date=[AS_OF], service_level=["met"], action=["grow"]),
    )


def test_segments_are_carried_over_and_rows_sorted_by_customer_id() -> None:
    result = customer_segments(
        profitability(("c", "profitable", "at_risk"), ("a", "unprofitable", "no_purchase")),
        quality(("a", "exceeded"), ("c", "below"), ("z", "met")),  # z has no profitability row
    ).collect()
    assert_frame_equal(
        result,
        segments(
            as_of_date=[AS_OF, AS_OF],
            customer_id=["a", "c"],
            profit_segment=["unprofitable", "profitable"],
            service_level=["exceeded", "below"],
            rfm_segment=["no_purchase", "at_risk"],
            action=["reduce_cost_to_serve", "retain_now"],
        ),
    )


def test_two_quality_rows_for_one_customer_and_date_raise() -> None:
    lazy = customer_segments(
        profitability(("a", "core", "new")), quality(("a", "met"), ("a", "below"))
    )
    with pytest.raises(pl.exceptions.ComputeError):
        lazy.collect()


def test_a_missing_input_column_raises() -> None:
    with pytest.raises(pl.exceptions.ColumnNotFoundError):
        customer_segments(
            profitability(("a", "core", "new")).drop("profit_segment"), quality(("a", "met"))
        ).collect()


@settings(max_examples=100, deadline=None)
@given(
    customers=st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=3),
        st.tuples(st.sampled_from(PROFIT_SEGMENTS), st.sampled_from((*SERVICE_LEVELS, None))),
        max_size=30,
    )
)
def test_each_customer_gets_exactly_one_action(
    customers: dict[str, tuple[str, str | None]],
) -> None:
    """None = the customer is missing from the quality snapshot."""
    result = customer_segments(
        profitability(*((c, p, "new") for c, (p, _) in customers.items())),
        quality(*((c, s) for c, (_, s) in customers.items() if s is not None)),
    ).collect()
    assert result["customer_id"].to_list() == sorted(customers)
    assert result["action"].null_count() == 0
    for row in result.iter_rows(named=True):
        valued = row["profit_segment"] != "unprofitable"
        wanted = {
            True: {"retain_now", "grow", "ask_feedback"},
            False: {"reduce_cost_to_serve", "review_terms"},
        }[valued]
        assert row["action"] in wanted
