"""customer_value (SPEC §6): the purchase summary by hand, the assembly (discounting, half-even
cents, value at risk), and the whole step on frames — nulls where a model did not converge."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from servio.config import Settings
from servio.schemas.snapshot_tables import customer_value_table
from servio.schemas.table import MONEY
from servio.transforms.profitability import customer_profitability
from servio.transforms.value import customer_value, purchase_summary
from servio.value_snapshot import value_snapshot
from tests.value_frames import (
    AS_OF,
    WINDOW_DAYS,
    contact,
    interactions,
    response,
    survey_responses,
)


def summary(*contacts: dict[str, Any], responses: tuple[dict[str, Any], ...] = ()) -> pl.DataFrame:
    return purchase_summary(
        interactions(*contacts), survey_responses(*responses), AS_OF, window_days=WINDOW_DAYS
    ).collect()


def row(frame: pl.DataFrame, customer_id: str) -> dict[str, Any]:
    return frame.filter(pl.col("customer_id") == customer_id).row(0, named=True)


# --- purchase summary ---------------------------------------------------------------------


def test_x_t_x_T_and_avg_repeat_spend_by_hand() -> None:
    # Purchase days 100, 40 (two purchases: 30 + 20) and 10 days before D; a refund and a
    # contact without a sale do not count; the first purchase day's revenue is excluded.
    frame = summary(
        contact("c", days_ago=100, revenue="80.00"),
        contact("c", days_ago=40, revenue="30.00"),
        contact("c", days_ago=40, hour=15, revenue="20.00"),
        contact("c", days_ago=25, revenue="-15.00"),
        contact("c", days_ago=20),
        contact("c", days_ago=10, revenue="35.01"),
    )
    got = row(frame, "c")
    assert (got["x"], got["t_x"], got["T"]) == (2, 90, 100)
    assert got["repeat_revenue"] == Decimal("85.01")
    assert got["avg_repeat_spend"] == pytest.approx(42.505, rel=1e-12)  # 85.01 / 2, unrounded


def test_a_single_purchase_day_has_x_zero_and_no_average() -> None:
    got = row(summary(contact("c", days_ago=7, revenue="10.00"), contact("c", days_ago=7)), "c")
    assert (got["x"], got["t_x"], got["T"], got["avg_repeat_spend"]) == (0, 0, 7, None)


def test_a_purchase_on_D_has_T_zero() -> None:
    got = row(summary(contact("c", days_ago=0, revenue="10.00")), "c")
    assert (got["x"], got["t_x"], got["T"]) == (0, 0, 0)


def test_every_customer_of_the_snapshot_appears_without_purchase_columns_if_none() -> None:
    frame = summary(
        contact("buyer", days_ago=3, revenue="5.00"),
        contact("refunded", days_ago=3, revenue="-5.00"),
        contact("talker", days_ago=3),
        responses=(response("respondent", days_ago=1),),
    )
    assert frame["customer_id"].to_list() == ["buyer", "refunded", "respondent", "talker"]
    for customer in ("refunded", "respondent", "talker"):
        got = row(frame, customer)
        assert [got[c] for c in ("x", "t_x", "T", "avg_repeat_spend")] == [None] * 4


def test_only_purchases_inside_the_window_count() -> None:
    frame = summary(
        contact("c", days_ago=WINDOW_DAYS, revenue="50.00"),  # the window's open start: out
        contact("c", days_ago=WINDOW_DAYS - 1, revenue="10.00"),
        contact("c", days_ago=-1, revenue="99.00"),  # after D: out
    )
    got = row(frame, "c")
    assert (got["x"], got["T"]) == (0, WINDOW_DAYS - 1)


def test_margin_is_the_customer_profitability_margin() -> None:
    contacts = (
        contact("a", days_ago=3, revenue="10.00"),
        contact("a", days_ago=2, revenue="-4.00"),
        contact("b", days_ago=1),
    )
    responses = (response("c"),)
    frame = summary(*contacts, responses=responses)
    profit = customer_profitability(
        interactions(*contacts), survey_responses(*responses), AS_OF, window_days=WINDOW_DAYS
    ).collect()
    assert_frame_equal(
        frame.select("customer_id", "margin"), profit.select("customer_id", "margin")
    )


@given(
    days=st.lists(
        st.tuples(st.integers(0, WINDOW_DAYS - 1), st.integers(1, 100_000)), min_size=1, max_size=12
    )
)
@settings(max_examples=100, deadline=None)
def test_summary_matches_a_direct_computation(days: list[tuple[int, int]]) -> None:
    contacts = [
        contact("c", days_ago=ago, hour=n % 24, revenue=f"{cents / 100:.2f}")
        for n, (ago, cents) in enumerate(days)
    ]
    got = row(summary(*contacts), "c")
    per_day: dict[int, int] = {}
    for ago, cents in days:
        per_day[ago] = per_day.get(ago, 0) + cents
    first, last = max(per_day), min(per_day)
    x = len(per_day) - 1
    assert (got["x"], got["t_x"], got["T"]) == (x, first - last, first)
    repeat = sum(cents for ago, cents in per_day.items() if ago != first)
    assert got["repeat_revenue"] == Decimal(repeat) / 100
    if x:
        assert got["avg_repeat_spend"] == pytest.approx(repeat / 100 / x, rel=1e-12)
    else:
        assert got["avg_repeat_spend"] is None


# --- assembly -----------------------------------------------------------------------------


def assemble(
    scores: dict[str, list[Any]],
    *,
    horizon: int = 365,
    rate: float = 0.10,
    margin_rate: float = 0.4,
) -> pl.DataFrame:
    base = summary(
        contact("a", days_ago=30, revenue="10.00", margin="25.00"),
        contact("a", days_ago=10, revenue="10.00", margin="0.00"),
        contact("b", days_ago=5, revenue="3.00", margin="0.625"),
        contact("z", days_ago=5),
    )
    frame = pl.LazyFrame(
        scores,
        schema={
            "customer_id": pl.String,
            "p_alive": pl.Float64,
            "expected_purchases": pl.Float64,
            "expected_spend": pl.Float64,
        },
    )
    return customer_value(
        base.lazy(),
        frame,
        AS_OF,
        horizon_days=horizon,
        gross_margin_rate=margin_rate,
        annual_discount_rate=rate,
    ).collect()


def test_clv_and_value_at_risk_by_hand() -> None:
    got = assemble(
        {
            "customer_id": ["a", "b"],
            "p_alive": [0.25, 0.5],
            "expected_purchases": [2.0, 0.5],
            "expected_spend": [100.0, 40.005],
        }
    )
    a, b = row(got, "a"), row(got, "b")
    # 2 × 100 × 0.4 ÷ 1.1^(365/730) = 80 ÷ 1.0488088… = 76.27700…
    assert a["clv"] == Decimal("76.28")
    # margin 10.00 (= 0.4 × (25 + 0)) × (1 − 0.25)
    assert a["value_at_risk"] == Decimal("7.50")
    assert a["expected_purchases_365d"] == 2.0
    # margin 0.25 × 0.5 = 0.125 → half-even 0.12; expected_spend is not money: kept as fitted
    assert b["value_at_risk"] == Decimal("0.12")
    assert b["expected_spend"] == 40.005


@pytest.mark.parametrize(
    ("horizon", "rate", "factor"), [(730, 0.10, 1.1), (365, 0.0, 1.0), (1460, 0.21, 1.21**2)]
)
def test_discounting_uses_half_the_horizon_in_years(
    horizon: int, rate: float, factor: float
) -> None:
    got = assemble(
        {
            "customer_id": ["a"],
            "p_alive": [1.0],
            "expected_purchases": [10.0],
            "expected_spend": [33.0],
        },
        horizon=horizon,
        rate=rate,
        margin_rate=0.5,
    )
    want = Decimal(str(round(10 * 33 * 0.5 / factor, 2)))
    assert row(got, "a")["clv"] == want
    assert f"expected_purchases_{horizon}d" in got.columns


def test_customers_without_scores_get_null_value_columns_and_the_table_schema() -> None:
    got = assemble(
        {
            "customer_id": ["a"],
            "p_alive": [None],
            "expected_purchases": [None],
            "expected_spend": [12.0],
        }
    )
    assert got.schema == customer_value_table(365).schema
    assert got["customer_id"].to_list() == ["a", "b", "z"]
    a, z = row(got, "a"), row(got, "z")
    assert (a["p_alive"], a["clv"], a["value_at_risk"]) == (None, None, None)
    assert a["expected_spend"] == 12.0
    assert all(z[c] is None for c in got.columns if c not in ("as_of_date", "customer_id"))
    assert got["clv"].dtype == MONEY


# --- the whole step ------------------------------------------------------------------------


def test_a_snapshot_where_nobody_repeats_reports_the_fit_and_scores_nobody() -> None:
    contacts = [contact(f"c{n:03d}", days_ago=n % 300, revenue="20.00") for n in range(200)]
    result = value_snapshot(interactions(*contacts), survey_responses(), AS_OF, Settings())
    model = result.value_model
    assert model["model"].to_list() == ["bg_nbd", "gamma_gamma"]
    assert model["converged"].to_list() == [False, False]
    assert model["n_customers"].to_list() == [200, 0]
    assert {f.model for f in result.unconverged} == {"bg_nbd", "gamma_gamma"}
    warnings = result.warnings()
    assert warnings[0].startswith("value model bg_nbd not converged (200 customers: ")
    assert warnings[0].endswith("p_alive, expected_purchases_365d, clv, value_at_risk left null")
    assert "no customer with a repeat purchase" in warnings[1]
    value = result.customer_value
    assert value.height == 200
    assert value["x"].to_list() == [0] * 200  # the summary is still there
    for column in ("p_alive", "expected_purchases_365d", "expected_spend", "clv", "value_at_risk"):
        assert value[column].null_count() == 200, column


def test_a_snapshot_with_a_converged_fit_scores_every_buyer() -> None:
    contacts = []
    rng = random.Random(5)
    for n in range(300):  # the BG/NBD story: buy, then drop out with probability 0.3, or wait
        ago, rate = rng.randrange(WINDOW_DAYS), rng.gammavariate(1.5, 1 / 30)
        while ago >= 0:
            spend = rng.gammavariate(4, 5 + n % 11)
            contacts.append(contact(f"c{n:03d}", days_ago=ago, revenue=f"{spend + 1:.2f}"))
            if rng.random() < 0.3:
                break
            ago -= max(1, round(rng.expovariate(rate)))
    contacts.append(contact("silent", days_ago=4))
    result = value_snapshot(interactions(*contacts), survey_responses(), AS_OF, Settings())
    assert all(f.converged for f in result.fits), [f.message for f in result.fits]
    value = result.customer_value
    buyers = value.filter(pl.col("x").is_not_null())
    assert buyers.height == 300
    for column in ("p_alive", "expected_purchases_365d", "expected_spend", "clv", "value_at_risk"):
        assert buyers[column].null_count() == 0, column
    assert buyers["p_alive"].is_between(0, 1).all()
    silent = row(value, "silent")
    assert silent["p_alive"] is None and silent["clv"] is None
    assert result.value_model["converged"].to_list() == [True, True]
    assert result.warnings() == []
    assert result.value_model.row(0, named=True)["p"] is None  # bg_nbd has no p


def test_an_empty_snapshot_gives_empty_or_null_tables_and_unfitted_models() -> None:
    result = value_snapshot(interactions(), survey_responses(), AS_OF, Settings())
    assert result.customer_value.height == 0
    assert result.value_model["converged"].to_list() == [False, False]
    assert result.value_model["n_customers"].to_list() == [0, 0]
    assert result.value_model["log_likelihood"].null_count() == 2
    assert result.quality_drivers["n_responses"].to_list() == [0] * 5
    assert result.quality_drivers["quadrant"].null_count() == 5
    levels = result.service_levels
    assert levels["n_interactions"].to_list() == [0] * 5
    assert levels["nps"].null_count() == levels["sla_breach_rate"].null_count() == 5
