"""customer_profitability and cost_to_serve: literal given → expected frames, one behaviour each."""

from __future__ import annotations

import datetime as dt
import decimal
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from servio.schemas.catalog import load_catalog
from servio.schemas.channels import CHANNELS, DEFAULT_RATES, ChannelRate
from servio.schemas.snapshot_tables import CUSTOMER_PROFITABILITY
from servio.schemas.table import MONEY
from servio.schemas.tables import INTERACTIONS, survey_responses_table
from servio.transforms.profitability import RFM_SEGMENTS, cost_to_serve, customer_profitability

AS_OF = dt.date(2026, 11, 27)
WINDOW_DAYS = 365
SURVEY_SCHEMA = survey_responses_table(load_catalog()).schema


def contact(
    customer_id: str,
    *,
    days_ago: int = 0,
    revenue: str = "0.00",
    margin: str = "0.00",
    cost: str = "0.00",
) -> dict[str, Any]:
    """One curated interaction `days_ago` days before AS_OF, with every column of the table."""
    day = AS_OF - dt.timedelta(days=days_ago)
    started_at = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)
    return {
        "customer_id": customer_id,
        "channel": "phone",
        "started_at": started_at,
        "interaction_date": day,
        "handle_seconds": 60.0,
        "is_resolved": True,
        "revenue": Decimal(revenue),
        "margin": Decimal(margin),
        "cost_to_serve": Decimal(cost),
        "currency": "EUR",
        "updated_at": started_at,
        "source_file": "interactions/test.csv",
        "source_seq": 1,
    }


def response(customer_id: str, *, days_ago: int = 0) -> dict[str, Any]:
    day = AS_OF - dt.timedelta(days=days_ago)
    return {
        "customer_id": customer_id,
        "submitted_at": dt.datetime(day.year, day.month, day.day, 9, tzinfo=dt.UTC),
        "submitted_date": day,
        "nps": 9,
        "source_file": "surveys/test.csv",
        "source_seq": 2,
    }


def interactions(*contacts: dict[str, Any]) -> pl.LazyFrame:
    rows = [
        {**row, "interaction_id": f"i{n}", "source_row": n} for n, row in enumerate(contacts, 1)
    ]
    return pl.LazyFrame(rows, schema=INTERACTIONS.schema)


def survey_responses(*responses: dict[str, Any]) -> pl.LazyFrame:
    rows = [{**row, "response_id": f"r{n}", "source_row": n} for n, row in enumerate(responses, 1)]
    return pl.LazyFrame(rows, schema=SURVEY_SCHEMA)


def profitability(
    *contacts: dict[str, Any], responses: tuple[dict[str, Any], ...] = ()
) -> pl.DataFrame:
    return customer_profitability(
        interactions(*contacts), survey_responses(*responses), AS_OF, window_days=WINDOW_DAYS
    ).collect()


def expected(**columns: list[Any]) -> pl.DataFrame:
    """A frame of some curated columns; money may be written as strings."""
    schema = {name: CUSTOMER_PROFITABILITY.schema[name] for name in columns}
    data = {
        name: [Decimal(v) if isinstance(v, str) and schema[name] == MONEY else v for v in values]
        for name, values in columns.items()
    }
    return pl.DataFrame(data, schema=schema)


def assert_columns(actual: pl.DataFrame, **columns: list[Any]) -> None:
    want = expected(**columns)
    assert_frame_equal(actual.select(want.columns), want)


# --- shape ------------------------------------------------------------------------------


def test_output_has_the_curated_schema_in_order() -> None:
    lazy = customer_profitability(
        interactions(contact("a", revenue="10.00")), survey_responses(), AS_OF, window_days=30
    )
    assert lazy.collect_schema() == CUSTOMER_PROFITABILITY.schema
    assert lazy.collect().schema == CUSTOMER_PROFITABILITY.schema


def test_a_single_customer_gives_one_complete_row() -> None:
    result = profitability(
        contact("a", days_ago=3, revenue="100.00", margin="40.00", cost="2.50"),
        contact("a", days_ago=10, revenue="0.00", margin="0.00", cost="1.25"),
    )
    assert_columns(
        result,
        as_of_date=[AS_OF],
        customer_id=["a"],
        revenue=["100.00"],
        margin=["40.00"],
        cost_to_serve=["3.75"],
        profit=["36.25"],
        profit_rank=[1],
        cumulative_profit_share=[1.0],
        profit_segment=["core"],
        kaplan_quadrant=["bargain_basement"],  # its own ratios are the medians: ties go low
        recency_days=[3],
        frequency=[1],
        monetary=["100.00"],
        r_score=[5],
        f_score=[5],
        m_score=[5],
        rfm_segment=["champions"],
    )
    assert result.columns == list(CUSTOMER_PROFITABILITY.schema)


def test_rows_are_sorted_by_customer_id() -> None:
    result = profitability(
        contact("c", revenue="1.00"), contact("a", revenue="3.00"), contact("b", revenue="2.00")
    )
    assert result["customer_id"].to_list() == ["a", "b", "c"]


def test_a_missing_input_column_raises() -> None:
    without_margin = interactions(contact("a")).drop("margin")
    with pytest.raises(pl.exceptions.ColumnNotFoundError):
        customer_profitability(
            without_margin, survey_responses(), AS_OF, window_days=WINDOW_DAYS
        ).collect()


# --- money ------------------------------------------------------------------------------


def test_money_is_summed_exactly_with_refunds_and_profit_is_margin_minus_cost() -> None:
    result = profitability(
        contact("a", revenue="0.10", margin="0.04", cost="0.30"),
        contact("a", revenue="0.20", margin="0.08", cost="0.01"),
        contact("a", revenue="-0.10", margin="-0.04", cost="0.05"),
        contact("b", revenue="1000000000.00", margin="400000000.00", cost="0.01"),
        contact("b", revenue="0.01", margin="0.01", cost="0.00"),
    )
    assert_columns(
        result,
        customer_id=["a", "b"],
        revenue=["0.20", "1000000000.01"],
        margin=["0.08", "400000000.01"],
        cost_to_serve=["0.36", "0.01"],
        profit=["-0.28", "400000000.00"],
    )


def test_a_customer_with_only_survey_responses_has_zero_money_and_no_purchase() -> None:
    result = profitability(contact("a", revenue="5.00", margin="2.00"), responses=(response("s"),))
    assert_columns(
        result.filter(pl.col("customer_id") == "s"),
        customer_id=["s"],
        revenue=["0.00"],
        margin=["0.00"],
        cost_to_serve=["0.00"],
        profit=["0.00"],
        profit_segment=["unprofitable"],
        kaplan_quadrant=[None],
        recency_days=[None],
        frequency=[None],
        monetary=[None],
        r_score=[None],
        f_score=[None],
        m_score=[None],
        rfm_segment=["no_purchase"],
    )


# --- window -----------------------------------------------------------------------------


def test_the_interaction_window_excludes_its_start_and_includes_as_of() -> None:
    result = profitability(
        contact("a", days_ago=WINDOW_DAYS, revenue="1000.00"),  # = D − window_days: outside
        contact("a", days_ago=WINDOW_DAYS - 1, revenue="100.00"),  # first day inside
        contact("a", days_ago=0, revenue="10.00"),  # D itself: inside
        contact("a", days_ago=-1, revenue="1.00"),  # after D: no look-ahead
        contact("old", days_ago=WINDOW_DAYS, revenue="5.00"),
        contact("future", days_ago=-1, revenue="5.00"),
    )
    assert_columns(result, customer_id=["a"], revenue=["110.00"], monetary=["110.00"])


def test_the_survey_window_excludes_its_start_and_includes_as_of() -> None:
    result = profitability(
        responses=(
            response("edge", days_ago=WINDOW_DAYS),
            response("first", days_ago=WINDOW_DAYS - 1),
            response("today", days_ago=0),
            response("future", days_ago=-1),
        )
    )
    assert_columns(result, customer_id=["first", "today"])


def test_window_days_sets_the_window_length() -> None:
    result = customer_profitability(
        interactions(contact("a", days_ago=6), contact("b", days_ago=7)),
        survey_responses(),
        AS_OF,
        window_days=7,
    ).collect()
    assert_columns(result, customer_id=["a"])


# --- whale curve ------------------------------------------------------------------------


def test_profit_rank_puts_the_most_profitable_first_and_breaks_ties_by_customer_id() -> None:
    result = profitability(
        contact("d", margin="5.00"),
        contact("b", margin="9.00"),
        contact("c", margin="5.00"),
        contact("a", margin="-1.00"),
    )
    assert_columns(result, customer_id=["a", "b", "c", "d"], profit_rank=[4, 1, 2, 3])


def test_cumulative_share_is_the_running_profit_over_the_snapshot_total() -> None:
    result = profitability(
        contact("a", margin="6.00"),
        contact("b", margin="3.00"),
        contact("c", margin="1.00"),
        contact("d", margin="-2.00"),
    )
    # total 8.00; in rank order a, b, c, d the running sums are 6, 9, 10, 8
    assert_columns(
        result,
        customer_id=["a", "b", "c", "d"],
        cumulative_profit_share=[0.75, 1.125, 1.25, 1.0],
    )


def test_cumulative_share_is_null_when_the_total_profit_is_zero() -> None:
    result = profitability(contact("a", margin="5.00"), contact("b", cost="5.00"))
    assert_columns(
        result,
        customer_id=["a", "b"],
        cumulative_profit_share=[None, None],
        profit_segment=["core", "unprofitable"],
    )


def test_when_no_profit_is_positive_everyone_is_unprofitable_with_a_null_share() -> None:
    result = profitability(
        contact("a", cost="1.00"), contact("b"), contact("c", revenue="-4.00", margin="-1.60")
    )
    assert_columns(
        result,
        customer_id=["a", "b", "c"],
        profit_rank=[2, 1, 3],
        cumulative_profit_share=[None, None, None],
        profit_segment=["unprofitable", "unprofitable", "unprofitable"],
    )


def test_core_stops_at_the_customer_that_exactly_reaches_80_percent() -> None:
    result = profitability(
        contact("a", margin="50.00"),
        contact("b", margin="30.00"),  # running 80.00 = 80 % of 100.00: the boundary counts
        contact("c", margin="15.00"),
        contact("d", margin="5.00"),
    )
    assert_columns(
        result,
        customer_id=["a", "b", "c", "d"],
        profit_segment=["core", "core", "profitable", "profitable"],
    )


def test_core_takes_the_next_customer_when_one_cent_short_of_80_percent() -> None:
    result = profitability(
        contact("a", margin="50.00"),
        contact("b", margin="29.99"),  # running 79.99 < 80.00
        contact("c", margin="15.01"),
        contact("d", margin="5.00"),
    )
    assert_columns(
        result,
        customer_id=["a", "b", "c", "d"],
        profit_segment=["core", "core", "core", "profitable"],
    )


def test_core_is_80_percent_of_the_positive_profits_not_of_the_total() -> None:
    result = profitability(
        contact("a", margin="60.00"),
        contact("b", margin="40.00"),
        contact("c", cost="50.00"),
    )
    # positive profits 100.00 → 80.00 needed: a alone (60.00) is not enough
    assert_columns(
        result,
        customer_id=["a", "b", "c"],
        profit_segment=["core", "core", "unprofitable"],
    )


def test_equal_profits_at_the_core_boundary_are_split_by_customer_id() -> None:
    result = profitability(
        contact("x", margin="60.00"),
        contact("b", margin="20.00"),
        contact("a", margin="20.00"),
    )
    assert_columns(
        result,
        customer_id=["a", "b", "x"],
        profit_segment=["core", "profitable", "core"],
    )


def test_zero_profit_is_unprofitable() -> None:
    result = profitability(contact("a", margin="1.00"), contact("z", margin="1.00", cost="1.00"))
    assert_columns(result, customer_id=["a", "z"], profit_segment=["core", "unprofitable"])


# --- Kaplan quadrant --------------------------------------------------------------------


def test_each_kaplan_quadrant_from_the_medians_of_an_even_count() -> None:
    result = profitability(
        # x = cost ÷ revenue, y = margin ÷ revenue; medians x 0.025, y 0.25 (mean of the middle two)
        contact("p", revenue="100.00", margin="40.00", cost="1.00"),  # y .40 high, x .01 low
        contact("c", revenue="100.00", margin="30.00", cost="4.00"),  # y .30 high, x .04 high
        contact("b", revenue="100.00", margin="10.00", cost="2.00"),  # y .10 low,  x .02 low
        contact("g", revenue="100.00", margin="20.00", cost="3.00"),  # y .20 low,  x .03 high
    )
    assert_columns(
        result,
        customer_id=["b", "c", "g", "p"],
        kaplan_quadrant=["bargain_basement", "carriage_trade", "aggressive", "passive"],
    )


def test_kaplan_ratios_equal_to_the_median_count_as_low() -> None:
    result = profitability(
        # y .1 .2 .2 .3 and x .1 .2 .2 .3: both medians are 0.2, held by two customers each
        contact("a", revenue="10.00", margin="1.00", cost="1.00"),  # y low,      x low
        contact("b", revenue="10.00", margin="2.00", cost="3.00"),  # y = median, x high
        contact("c", revenue="10.00", margin="2.00", cost="2.00"),  # y = median, x = median
        contact("d", revenue="10.00", margin="3.00", cost="2.00"),  # y high,     x = median
    )
    assert_columns(
        result,
        customer_id=["a", "b", "c", "d"],
        kaplan_quadrant=["bargain_basement", "aggressive", "bargain_basement", "passive"],
    )


def test_equal_kaplan_ratios_from_different_cents_are_a_tie() -> None:
    # 0.30 ÷ 0.70 = 3.30 ÷ 7.70 = 3/7, the median; as floats 0.3/0.7 > 3.3/7.7 by one ulp
    result = profitability(
        contact("a", revenue="0.70", margin="0.30"),
        contact("b", revenue="7.70", margin="3.30"),
        contact("c", revenue="10.00", margin="1.00"),
    )
    assert_columns(
        result,
        customer_id=["a", "b", "c"],
        kaplan_quadrant=["bargain_basement", "bargain_basement", "bargain_basement"],
    )


def test_kaplan_medians_of_an_odd_count_are_the_middle_customer() -> None:
    result = profitability(
        contact("lo", revenue="10.00", margin="1.00", cost="1.00"),
        contact("mid", revenue="10.00", margin="2.00", cost="2.00"),
        contact("hi", revenue="10.00", margin="3.00", cost="3.00"),
    )
    assert_columns(
        result,
        customer_id=["hi", "lo", "mid"],
        kaplan_quadrant=["carriage_trade", "bargain_basement", "bargain_basement"],
    )


def test_customers_without_positive_revenue_get_no_quadrant_and_no_say_in_the_medians() -> None:
    result = profitability(
        contact("a", revenue="100.00", margin="10.00", cost="1.00"),
        contact("b", revenue="100.00", margin="30.00", cost="3.00"),
        contact("zero", revenue="0.00", cost="9.00"),
        contact("refund", revenue="-50.00", margin="-20.00", cost="1.00"),
        # net revenue 0: a purchase fully refunded
        contact("netzero", days_ago=2, revenue="10.00", margin="4.00"),
        contact("netzero", revenue="-10.00", margin="-4.00"),
    )
    assert_columns(
        result,
        customer_id=["a", "b", "netzero", "refund", "zero"],
        kaplan_quadrant=["bargain_basement", "carriage_trade", None, None, None],
    )


# --- RFM --------------------------------------------------------------------------------


def test_rfm_values_count_purchases_only() -> None:
    result = profitability(
        contact("a", days_ago=20, revenue="10.00"),
        contact("a", days_ago=5, revenue="2.50"),
        contact("a", days_ago=5, revenue="7.50"),  # same day: one purchase day
        contact("a", days_ago=1, revenue="0.00"),  # a contact without a sale is no purchase
        contact("a", days_ago=0, revenue="-4.00"),  # nor is a refund
    )
    assert_columns(
        result,
        customer_id=["a"],
        revenue=["16.00"],
        recency_days=[5],
        frequency=[2],
        monetary=["20.00"],
    )


def test_customers_without_a_purchase_have_null_rfm_and_are_no_purchase() -> None:
    result = profitability(
        contact("a", revenue="10.00"),
        contact("refund", revenue="-10.00"),
        contact("zero", revenue="0.00", cost="1.00"),
    )
    assert_columns(
        result,
        customer_id=["a", "refund", "zero"],
        recency_days=[0, None, None],
        frequency=[1, None, None],
        monetary=["10.00", None, None],
        r_score=[5, None, None],
        f_score=[5, None, None],
        m_score=[5, None, None],
        rfm_segment=["champions", "no_purchase", "no_purchase"],
    )


def test_scores_are_ceil_of_5_rank_over_n_from_worst_to_best() -> None:
    # seven purchasers, distinct monetary 1..7: ceil(5·rank/7) = 1 2 3 3 4 5 5
    result = profitability(*(contact(f"c{k}", revenue=f"{k}.00") for k in range(1, 8)))
    assert_columns(
        result,
        customer_id=[f"c{k}" for k in range(1, 8)],
        m_score=[1, 2, 3, 3, 4, 5, 5],
    )


def test_with_fewer_than_five_purchasers_some_scores_are_skipped() -> None:
    result = profitability(
        contact("a", days_ago=30, revenue="1.00"),
        contact("b", days_ago=20, revenue="2.00"),
        contact("c", days_ago=10, revenue="3.00"),
    )
    # n = 3: ranks 1, 2, 3 → ceil(5/3) = 2, ceil(10/3) = 4, 5; the fewest days is best
    assert_columns(result, customer_id=["a", "b", "c"], r_score=[2, 4, 5], m_score=[2, 4, 5])


def test_equal_rfm_values_are_ranked_by_customer_id() -> None:
    result = profitability(
        *(contact(c, days_ago=3, revenue="5.00") for c in ("e", "c", "a", "d", "b"))
    )
    # all equal: ranks follow customer_id ascending, worst first
    assert_columns(
        result,
        customer_id=["a", "b", "c", "d", "e"],
        r_score=[1, 2, 3, 4, 5],
        f_score=[1, 2, 3, 4, 5],
        m_score=[1, 2, 3, 4, 5],
    )


def test_recency_ranks_most_days_as_worst() -> None:
    result = profitability(*(contact(f"c{k}", days_ago=10 * k, revenue="1.00") for k in range(5)))
    assert_columns(
        result,
        customer_id=[f"c{k}" for k in range(5)],
        recency_days=[0, 10, 20, 30, 40],
        r_score=[5, 4, 3, 2, 1],
    )


# R ↓, F → 1..5, typed out from the SPEC §4.2 table.
SPEC_RFM_GRID = {
    1: ["hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"],
    2: ["hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"],
    3: ["about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"],
    4: ["promising", "potential_loyalist", "potential_loyalist", "loyal", "loyal"],
    5: ["new", "potential_loyalist", "potential_loyalist", "champions", "champions"],
}


def test_every_r_f_pair_gets_its_segment() -> None:
    # 25 purchasers, five per recency and five per frequency, so that R and F are r and f.
    contacts = [
        contact(f"r{r}f{f}", days_ago=10 * (5 - r) + day, revenue="1.00")
        for r in range(1, 6)
        for f in range(1, 6)
        for day in range(f)
    ]
    pairs = [(r, f) for r in range(1, 6) for f in range(1, 6)]
    assert_columns(
        profitability(*contacts),
        customer_id=[f"r{r}f{f}" for r, f in pairs],
        r_score=[r for r, _ in pairs],
        f_score=[f for _, f in pairs],
        rfm_segment=[SPEC_RFM_GRID[r][f - 1] for r, f in pairs],
    )


def test_the_rfm_table_covers_each_r_f_pair_exactly_once() -> None:
    for r in range(1, 6):
        for f in range(1, 6):
            matches = [
                name
                for r_from, r_to, f_from, f_to, name in RFM_SEGMENTS
                if r_from <= r <= r_to and f_from <= f <= f_to
            ]
            assert matches == [SPEC_RFM_GRID[r][f - 1]], (r, f)


# --- invariants -------------------------------------------------------------------------

cents = st.integers(-50_000, 50_000).map(lambda c: f"{Decimal(c) / 100:.2f}")
contacts_strategy = st.lists(
    st.builds(
        lambda customer, days, revenue, margin, cost: contact(
            customer, days_ago=days, revenue=revenue, margin=margin, cost=cost
        ),
        st.sampled_from("abcdefghij"),
        st.integers(-2, WINDOW_DAYS + 2),
        st.one_of(st.just("0.00"), cents),
        cents,
        st.integers(0, 5_000).map(lambda c: f"{Decimal(c) / 100:.2f}"),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(contacts=contacts_strategy, survey_only=st.lists(st.sampled_from("stuv"), max_size=3))
def test_snapshot_invariants(contacts: list[dict[str, Any]], survey_only: list[str]) -> None:
    result = profitability(*contacts, responses=tuple(response(c) for c in survey_only))
    n = result.height
    by_rank = result.sort("profit_rank")

    # profit_rank is a permutation of 1..n in (profit desc, customer_id) order
    assert by_rank["profit_rank"].to_list() == list(range(1, n + 1))
    ordered = sorted(result.iter_rows(named=True), key=lambda r: (-r["profit"], r["customer_id"]))
    assert [r["customer_id"] for r in ordered] == by_rank["customer_id"].to_list()

    # the whale curve ends at 1 when the total is positive, and does not exist otherwise
    total = sum(result["profit"].to_list(), Decimal(0))
    shares = by_rank["cumulative_profit_share"]
    if total > 0:
        assert shares[-1] == 1.0
    else:
        assert shares.null_count() == n

    # the core is the fewest top customers that reach 80 % of the positive profits
    positive = sum((p for p in result["profit"] if p > 0), Decimal(0))
    core = by_rank.filter(pl.col("profit_segment") == "core")["profit"].to_list()
    assert by_rank["profit_segment"].to_list()[: len(core)] == ["core"] * len(core)
    if positive > 0:
        assert 5 * sum(core) >= 4 * positive
        assert 5 * (sum(core) - core[-1]) < 4 * positive
    else:
        assert core == []
    others = by_rank.slice(len(core))
    assert (others["profit_segment"] == "profitable").to_list() == (others["profit"] > 0).to_list()

    # a quadrant exactly for revenue > 0; RFM exactly for purchasers
    assert result["kaplan_quadrant"].is_null().to_list() == (result["revenue"] <= 0).to_list()
    purchasers = result.filter(pl.col("rfm_segment") != "no_purchase")
    for score in ("r_score", "f_score", "m_score"):
        assert result[score].null_count() == n - purchasers.height
        # score ≤ s for exactly floor(s·n/5) purchasers: the quintiles of a ranking
        for s in range(1, 6):
            expected_count = s * purchasers.height // 5
            assert (purchasers[score] <= s).sum() == expected_count


# --- cost_to_serve ----------------------------------------------------------------------


def costs(
    channels: list[str], handle_seconds: list[float], rates: dict[str, ChannelRate]
) -> list[Any]:
    frame = pl.LazyFrame({"channel": channels, "handle_seconds": handle_seconds})
    cost = cost_to_serve(pl.col("channel"), pl.col("handle_seconds"), rates).alias("cost")
    result = frame.select(cost).collect()
    assert result.schema["cost"] == INTERACTIONS.schema["cost_to_serve"]
    return result["cost"].to_list()


def test_cost_to_serve_is_per_contact_plus_per_minute_of_handling() -> None:
    assert costs(["visit", "web", "chat"], [90.0, 600.0, 0.0], DEFAULT_RATES) == [
        Decimal("3.80"),  # 2.00 + 1.20 × 1.5
        Decimal("0.05"),
        Decimal("0.30"),
    ]


def test_cost_to_serve_rounds_half_cents_to_even() -> None:
    # phone 0.50 + 0.90 × s / 60: 1 s → 0.515, 3 s → 0.545, 3.000001 s → 0.545000015
    assert costs(["phone"] * 3, [1.0, 3.0, 3.000001], DEFAULT_RATES) == [
        Decimal("0.52"),
        Decimal("0.54"),
        Decimal("0.55"),
    ]


def test_cost_to_serve_keeps_a_quotient_just_above_a_half_cent_above_it() -> None:
    # 0.01 per minute: 30 s cost 0.005 exactly → 0.00 (half-even); 30.000001 s cost
    # 0.0050000001666…, which must round up, however the division by 60 is carried out.
    rates = {"chat": ChannelRate(per_contact=0.0, per_minute=0.01)}
    assert costs(["chat", "chat"], [30.0, 30.000001], rates) == [Decimal("0.00"), Decimal("0.01")]


def test_cost_to_serve_reads_handle_seconds_to_the_nearest_microsecond() -> None:
    # email 0.40 + 0.50 × s / 60. The float 5.4 is 5.40000000000000035…: read as 5.400000 s
    # it costs exactly 0.445 → 0.44, where the binary value would round up to 0.45.
    # 6.5999996 s is 6.600000 s to the nearest microsecond: exactly 0.455 → 0.46 (truncating
    # to 6.599999 s, or using the binary value, would give 0.45); 6.5999994 s is 6.599999 s.
    assert costs(["email"] * 3, [5.4, 6.5999996, 6.5999994], DEFAULT_RATES) == [
        Decimal("0.44"),
        Decimal("0.46"),
        Decimal("0.45"),
    ]


def test_cost_to_serve_uses_the_rates_as_written_not_their_binary_floats() -> None:
    # web: 0.005 + 0.15 = 0.155 exactly → 0.16; the floats sum to 0.15499999… → 0.15.
    # chat: 0.025 exactly → 0.02 (half-even); the float 0.025000000000000001… → 0.03.
    rates = {
        "web": ChannelRate(per_contact=0.005, per_minute=0.15),
        "chat": ChannelRate(per_contact=0.025, per_minute=0.0),
    }
    assert costs(["web", "chat"], [60.0, 60.0], rates) == [Decimal("0.16"), Decimal("0.02")]


def test_cost_to_serve_is_null_for_a_channel_without_a_rate() -> None:
    assert costs(["fax"], [60.0], DEFAULT_RATES) == [None]


def test_cost_to_serve_rejects_rates_too_fine_to_compute_exactly() -> None:
    rates = {"phone": ChannelRate(per_contact=0.5, per_minute=1e-13)}
    with pytest.raises(ValueError, match=r"cost_to_serve\.phone"):
        cost_to_serve(pl.col("channel"), pl.col("handle_seconds"), rates)


rates_strategy = st.fixed_dictionaries(
    {
        channel: st.tuples(
            st.integers(0, 10_000_000),
            st.integers(0, 4),
            st.integers(0, 10_000_000),
            st.integers(0, 4),
        )
        for channel in CHANNELS
    }
)


@settings(max_examples=200, deadline=None)
@given(
    rate_digits=rates_strategy,
    rows=st.lists(
        st.tuples(
            st.sampled_from(CHANNELS),
            st.one_of(
                st.integers(0, 86_400).map(lambda s: s * 1_000_000),
                st.integers(0, 86_400_000_000),
            ),
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_cost_to_serve_equals_exact_decimal_arithmetic(
    rate_digits: dict[str, tuple[int, int, int, int]], rows: list[tuple[str, int]]
) -> None:
    """Against Python's decimal: rates k / 10^d, handle seconds given in whole microseconds."""

    def rate(units: int, decimals: int) -> Decimal:
        return Decimal(units).scaleb(-decimals)

    exact = {channel: (rate(a, b), rate(c, d)) for channel, (a, b, c, d) in rate_digits.items()}
    rates = {
        channel: ChannelRate(per_contact=float(contact_rate), per_minute=float(minute_rate))
        for channel, (contact_rate, minute_rate) in exact.items()
    }
    with decimal.localcontext(prec=80):
        want = [
            (exact[channel][0] + exact[channel][1] * Decimal(micros).scaleb(-6) / 60).quantize(
                Decimal("0.01"), rounding=decimal.ROUND_HALF_EVEN
            )
            for channel, micros in rows
        ]
    channels = [channel for channel, _ in rows]
    seconds = [micros / 1_000_000 for _, micros in rows]
    assert costs(channels, seconds, rates) == want
