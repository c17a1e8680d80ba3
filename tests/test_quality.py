"""Service quality gaps per response and the `customer_quality` snapshot (SPEC §4.1, §4.2).

Literal given → expected frames on a five-item catalog whose weights are exact in binary,
so expected floats are compared exactly; property tests check the snapshot's interaction
rates against a brute-force reading of the spec.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from servio.schemas.catalog import Item, ItemCatalog, load_catalog
from servio.schemas.snapshot_tables import customer_quality_table
from servio.schemas.tables import INTERACTIONS, survey_responses_table
from servio.transforms.quality import customer_quality, survey_response_scores

UTC = datetime.UTC
CATALOG = ItemCatalog(
    (
        Item("rel1", "reliability", "technical"),
        Item("rel2", "reliability", "technical"),
        Item("res1", "responsiveness", "functional"),
        Item("res2", "responsiveness", "functional"),
        Item("emp1", "empathy", "functional"),
    )
)
WEIGHTS = {"reliability": 0.5, "responsiveness": 0.25, "empathy": 0.25}
AS_OF = datetime.date(2026, 11, 27)
WINDOW_DAYS = 14  # window (2026-11-13, 2026-11-27]
BAND = 0.5


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=UTC)


# ---------------------------------------------------------------------------------------
# Builders: only what a test is about is spelled out; every other column is null.


def survey_answers(**values: int | None) -> pl.LazyFrame:
    """One standardised survey row: `exp_<item>`/`perc_<item>` and `nps` as given, else null."""
    schema = {column: pl.Int32 for column in (*CATALOG.answer_columns, "nps")}
    return pl.LazyFrame([values], schema=schema)


def scores(answers: pl.LazyFrame, *columns: str) -> pl.DataFrame:
    return survey_response_scores(answers, CATALOG, WEIGHTS).select(columns).collect()


def contact(
    customer_id: str,
    started_at: datetime.datetime,
    reason: str | None = "billing",
    *,
    resolved: bool = True,
    interaction_id: str | None = None,
    queue_seconds: float | None = None,
    handle_seconds: float = 60.0,
) -> dict[str, Any]:
    return {
        "interaction_id": interaction_id,
        "customer_id": customer_id,
        "started_at": started_at.astimezone(UTC),
        "reason": reason,
        "is_resolved": resolved,
        "queue_seconds": queue_seconds,
        "handle_seconds": handle_seconds,
    }


def interactions(*contacts: dict[str, Any]) -> pl.LazyFrame:
    """Curated `interactions` rows; ids default to i1, i2, … in the order given."""
    rows = [
        {**c, "interaction_id": c["interaction_id"] or f"i{n}"} for n, c in enumerate(contacts, 1)
    ]
    schema = {k: v for k, v in INTERACTIONS.schema.items() if k != "interaction_date"}
    return (
        pl.LazyFrame(rows, schema=schema)
        .with_columns(interaction_date=pl.col("started_at").dt.date())
        .select(INTERACTIONS.schema.names())
    )


def response(
    customer_id: str,
    submitted_at: datetime.datetime,
    *,
    response_id: str | None = None,
    **values: Any,
) -> dict[str, Any]:
    return {
        "response_id": response_id,
        "customer_id": customer_id,
        "submitted_at": submitted_at,
        **values,
    }


def survey_responses(*rows: dict[str, Any]) -> pl.LazyFrame:
    """Curated `survey_responses` rows; ids default to r1, r2, … in the order given."""
    table = survey_responses_table(CATALOG)
    rows_with_ids = [
        {**r, "response_id": r["response_id"] or f"r{n}"} for n, r in enumerate(rows, 1)
    ]
    schema = {k: v for k, v in table.schema.items() if k != "submitted_date"}
    return (
        pl.LazyFrame(rows_with_ids, schema=schema)
        .with_columns(submitted_date=pl.col("submitted_at").dt.date())
        .select(table.schema.names())
    )


NO_CONTACTS = interactions()
NO_RESPONSES = survey_responses()


def quality(
    contacts: pl.LazyFrame = NO_CONTACTS,
    responses: pl.LazyFrame = NO_RESPONSES,
    *columns: str,
    band: float = BAND,
) -> pl.DataFrame:
    snapshot = customer_quality(
        contacts, responses, AS_OF, window_days=WINDOW_DAYS, band=band, catalog=CATALOG
    )
    return snapshot.select("customer_id", *columns).collect()


def expected(rows: dict[str, list[Any]]) -> pl.DataFrame:
    """A `customer_quality` frame of the columns given, with their curated dtypes."""
    schema = customer_quality_table(CATALOG).schema
    return pl.DataFrame(rows, schema={name: schema[name] for name in rows})


def assert_equal(result: pl.DataFrame, wanted: pl.DataFrame) -> None:
    assert_frame_equal(result, wanted, check_exact=True)


# ---------------------------------------------------------------------------------------
# survey_response_scores


def test_partially_answered_dimension_uses_the_answered_items() -> None:
    answers = survey_answers(exp_rel1=4, perc_rel1=6, exp_rel2=5)  # perc_rel2 not answered
    result = scores(answers, "reliability_expectation", "reliability_perception", "reliability_gap")
    wanted = pl.DataFrame(
        {
            "reliability_expectation": [4.5],
            "reliability_perception": [6.0],
            "reliability_gap": [2.0],
        }
    )
    assert_equal(result, wanted)


def test_dimension_without_an_answered_item_has_null_scores() -> None:
    answers = survey_answers(exp_rel1=4, perc_rel1=6)
    result = scores(answers, "empathy_expectation", "empathy_perception", "empathy_gap")
    wanted = pl.DataFrame(
        {"empathy_expectation": [None], "empathy_perception": [None], "empathy_gap": [None]},
        schema={
            c: pl.Float64 for c in ("empathy_expectation", "empathy_perception", "empathy_gap")
        },
    )
    assert_equal(result, wanted)


def test_service_gap_renormalises_the_weights_over_answered_dimensions() -> None:
    # reliability gap 2 (w 0.5), responsiveness gap −1 (w 0.25), empathy unanswered:
    # (0.5·2 + 0.25·−1) ÷ 0.75 = 1.0, not 0.75 as with all the weights.
    answers = survey_answers(exp_rel1=3, perc_rel1=5, exp_res1=5, perc_res1=4)
    result = scores(answers, "service_gap")
    assert_equal(result, pl.DataFrame({"service_gap": [1.0]}))


def test_side_gaps_average_items_not_dimension_means() -> None:
    # functional item gaps: res1 +3, res2 +1, emp1 −2 → 2/3 (dimension means would give 0)
    answers = survey_answers(
        exp_rel1=4, perc_rel1=5,
        exp_res1=2, perc_res1=5, exp_res2=4, perc_res2=5, exp_emp1=6, perc_emp1=4,
    )  # fmt: skip
    result = scores(answers, "technical_gap", "functional_gap")
    assert_equal(result, pl.DataFrame({"technical_gap": [1.0], "functional_gap": [2 / 3]}))


def test_item_with_only_an_expectation_gives_no_gap() -> None:
    answers = survey_answers(exp_rel1=4, perc_rel1=6, exp_rel2=1, exp_emp1=2)
    result = scores(answers, "reliability_gap", "empathy_gap", "technical_gap", "functional_gap")
    wanted = pl.DataFrame(
        {
            "reliability_gap": [2.0],
            "empathy_gap": [None],
            "technical_gap": [2.0],
            "functional_gap": [None],
        },
        schema={
            c: pl.Float64
            for c in ("reliability_gap", "empathy_gap", "technical_gap", "functional_gap")
        },
    )
    assert_equal(result, wanted)


def test_perception_only_response_keeps_perceptions_and_has_null_gaps() -> None:
    answers = survey_answers(perc_rel1=6, perc_rel2=3, perc_emp1=7)
    result = scores(
        answers,
        "reliability_expectation", "reliability_perception", "reliability_gap",
        "empathy_perception", "technical_gap", "functional_gap", "service_gap",
    )  # fmt: skip
    wanted = pl.DataFrame(
        {
            "reliability_expectation": [None],
            "reliability_perception": [4.5],
            "reliability_gap": [None],
            "empathy_perception": [7.0],
            "technical_gap": [None],
            "functional_gap": [None],
            "service_gap": [None],
        },
        schema={c: pl.Float64 for c in result.columns},
    )
    assert_equal(result, wanted)


def test_service_gap_is_null_when_only_zero_weight_dimensions_are_answered() -> None:
    weights = {"reliability": 1.0, "responsiveness": 0.0, "empathy": 0.0}
    answers = survey_answers(exp_emp1=3, perc_emp1=5)
    result = survey_response_scores(answers, CATALOG, weights).select("service_gap").collect()
    assert_equal(result, pl.DataFrame({"service_gap": [None]}, schema={"service_gap": pl.Float64}))


def test_service_gap_uses_the_configured_weights() -> None:
    weights = {"reliability": 0.75, "responsiveness": 0.25, "empathy": 0.0}
    answers = survey_answers(
        exp_rel1=3, perc_rel1=5, exp_res1=5, perc_res1=3, exp_emp1=1, perc_emp1=7
    )
    result = survey_response_scores(answers, CATALOG, weights).select("service_gap").collect()
    assert_equal(result, pl.DataFrame({"service_gap": [1.0]}))  # 0.75·2 + 0.25·−2 + 0·6


@pytest.mark.parametrize(
    ("nps", "group"),
    [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"), (9, "promoter"),
     (10, "promoter"), (None, None)],
)  # fmt: skip
def test_nps_group_boundaries(nps: int | None, group: str | None) -> None:
    result = scores(survey_answers(nps=nps), "nps_group")
    assert_equal(result, pl.DataFrame({"nps_group": [group]}, schema={"nps_group": pl.String}))


def test_scores_complete_the_curated_survey_columns() -> None:
    table = survey_responses_table(CATALOG)
    scored = {f"{d}_{s}" for d in CATALOG.dimensions for s in ("expectation", "perception", "gap")}
    scored |= {"technical_gap", "functional_gap", "service_gap", "nps_group"}
    standardised = pl.LazyFrame(schema={k: v for k, v in table.schema.items() if k not in scored})
    result = survey_response_scores(standardised, CATALOG, WEIGHTS)
    assert result.select(table.schema.names()).collect_schema() == table.schema


def test_a_dimension_without_a_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="empathy"):
        survey_response_scores(
            survey_answers(), CATALOG, {"reliability": 0.5, "responsiveness": 0.5}
        )


def test_a_missing_item_column_raises() -> None:
    answers = survey_answers(exp_rel1=4, perc_rel1=6).drop("perc_emp1")
    with pytest.raises(pl.exceptions.ColumnNotFoundError):
        survey_response_scores(answers, CATALOG, WEIGHTS).collect()


# ---------------------------------------------------------------------------------------
# customer_quality: shape


def test_output_has_the_curated_schema() -> None:
    snapshot = customer_quality(
        interactions(contact("c1", utc(2026, 11, 25, 9))),
        survey_responses(response("c1", utc(2026, 11, 25, 10), nps=9, service_gap=0.25)),
        AS_OF, window_days=WINDOW_DAYS, band=BAND, catalog=CATALOG,
    )  # fmt: skip
    assert snapshot.collect().schema == customer_quality_table(CATALOG).schema


def test_output_has_the_curated_schema_for_the_default_catalog() -> None:
    catalog = load_catalog()
    snapshot = customer_quality(
        pl.LazyFrame(schema=INTERACTIONS.schema),
        pl.LazyFrame(schema=survey_responses_table(catalog).schema),
        AS_OF, window_days=365, band=BAND, catalog=catalog,
    )  # fmt: skip
    assert snapshot.collect().schema == customer_quality_table(catalog).schema


def test_one_row_per_customer_sorted_by_customer_id_with_the_as_of_date() -> None:
    contacts = interactions(
        contact("c2", utc(2026, 11, 25, 9)),
        contact("c1", utc(2026, 11, 25, 9)),
        contact("c2", utc(2026, 11, 26, 9)),
    )
    result = quality(contacts, NO_RESPONSES, "as_of_date", "n_interactions")
    wanted = expected(
        {"customer_id": ["c1", "c2"], "as_of_date": [AS_OF, AS_OF], "n_interactions": [1, 2]}
    )
    assert_equal(result, wanted)


# ---------------------------------------------------------------------------------------
# customer_quality: the window (D − window_days, D] on UTC dates


def test_window_excludes_its_open_start_and_includes_D() -> None:
    contacts = interactions(
        contact("on_start_date", utc(2026, 11, 13, 12)),  # D − 14: excluded
        contact("day_after_start", utc(2026, 11, 14, 0)),
        contact("last_instant_of_D", datetime.datetime(2026, 11, 27, 23, 59, 59, 999_999, UTC)),
        contact("after_D", utc(2026, 11, 28, 0)),
    )
    result = quality(contacts, NO_RESPONSES, "n_interactions")
    wanted = expected(
        {"customer_id": ["day_after_start", "last_instant_of_D"], "n_interactions": [1, 1]}
    )
    assert_equal(result, wanted)


def test_window_applies_to_responses_by_submitted_date() -> None:
    responses = survey_responses(
        response("on_start_date", utc(2026, 11, 13, 23, 59)),
        response("day_after_start", utc(2026, 11, 14, 0, 0)),
        response("on_D", utc(2026, 11, 27, 23, 0)),
        response("after_D", utc(2026, 11, 28, 0, 0)),
    )
    result = quality(NO_CONTACTS, responses, "n_responses")
    wanted = expected({"customer_id": ["day_after_start", "on_D"], "n_responses": [1, 1]})
    assert_equal(result, wanted)


def test_contacts_either_side_of_midnight_utc_at_the_window_start() -> None:
    # 00:30 in Paris on the 14th is 23:30 UTC on the 13th: standardised to UTC, its
    # interaction_date is the 13th, outside the window; 00:30 UTC on the 14th is inside.
    paris = ZoneInfo("Europe/Paris")
    contacts = interactions(
        contact("c1", datetime.datetime(2026, 11, 14, 0, 30, tzinfo=paris)),  # 2026-11-13 23:30Z
        contact("c1", utc(2026, 11, 14, 0, 30)),
    )
    result = quality(contacts, NO_RESPONSES, "n_interactions", "repeat_contact_rate_7d")
    # Inside the window the 23:30 contact would have been repeated an hour later (rate 0.5).
    wanted = expected(
        {"customer_id": ["c1"], "n_interactions": [1], "repeat_contact_rate_7d": [0.0]}
    )
    assert_equal(result, wanted)


def test_contacts_either_side_of_midnight_utc_at_the_window_end() -> None:
    contacts = interactions(
        contact("c1", utc(2026, 11, 27, 23, 30)),
        contact("c1", utc(2026, 11, 28, 0, 30)),  # after D: not seen, so no repeat
    )
    result = quality(contacts, NO_RESPONSES, "n_interactions", "repeat_contact_rate_7d", "fcr_rate")
    wanted = expected(
        {
            "customer_id": ["c1"],
            "n_interactions": [1],
            "repeat_contact_rate_7d": [0.0],
            "fcr_rate": [1.0],
        }
    )
    assert_equal(result, wanted)


def test_responses_after_D_are_ignored() -> None:
    responses = survey_responses(
        response("c1", utc(2026, 11, 26, 9), nps=9, csat=5, service_gap=1.0),
        response("c1", utc(2026, 11, 28, 9), nps=2, csat=1, service_gap=-3.0),
    )
    result = quality(NO_CONTACTS, responses, "n_responses", "nps_last", "csat_mean", "service_gap")
    wanted = expected(
        {
            "customer_id": ["c1"],
            "n_responses": [1],
            "nps_last": [9],
            "csat_mean": [5.0],
            "service_gap": [1.0],
        }
    )
    assert_equal(result, wanted)


# ---------------------------------------------------------------------------------------
# customer_quality: survey side


def test_response_gaps_are_averaged_over_responses_ignoring_nulls() -> None:
    responses = survey_responses(
        response("c1", utc(2026, 11, 22, 9), reliability_gap=1.0, empathy_gap=None,
                 technical_gap=1.0, functional_gap=-0.5, service_gap=0.25),
        response("c1", utc(2026, 11, 23, 9), reliability_gap=None, empathy_gap=None,
                 technical_gap=None, functional_gap=1.5, service_gap=0.75),
        response("c1", utc(2026, 11, 24, 9), reliability_gap=-2.0, empathy_gap=None,
                 technical_gap=-2.0, functional_gap=None, service_gap=None),
    )  # fmt: skip
    columns = ("n_responses", "reliability_gap", "empathy_gap", "technical_gap",
               "functional_gap", "service_gap")  # fmt: skip
    result = quality(NO_CONTACTS, responses, *columns)
    wanted = expected(
        {
            "customer_id": ["c1"],
            "n_responses": [3],
            "reliability_gap": [-0.5],
            "empathy_gap": [None],
            "technical_gap": [-0.5],
            "functional_gap": [0.5],
            "service_gap": [0.5],
        }
    )
    assert_equal(result, wanted)


@pytest.mark.parametrize(
    ("service_gap", "level"),
    [(0.5, "met"), (-0.5, "met"), (0.0, "met"), (0.5000001, "exceeded"), (-0.5000001, "below"),
     (0.5000000000000001, "met"), (-0.5000000000000001, "met"), (None, "unknown")],
)  # fmt: skip
def test_service_level_against_the_band(service_gap: float | None, level: str) -> None:
    responses = survey_responses(response("c1", utc(2026, 11, 25, 9), service_gap=service_gap))
    result = quality(NO_CONTACTS, responses, "service_level")
    assert_equal(result, expected({"customer_id": ["c1"], "service_level": [level]}))


@pytest.mark.parametrize(
    "answers",
    [
        # reliability +1.5, responsiveness −0.5: (0.2·1.5 + 0.2·−0.5) ÷ 0.4 = 0.5000000000000001
        dict(exp_rel1=3, perc_rel1=5, exp_rel2=3, perc_rel2=4,
             exp_res1=4, perc_res1=3, exp_res2=4, perc_res2=4),
        # reliability −1.5, responsiveness +0.5: −0.5000000000000001
        dict(exp_rel1=5, perc_rel1=3, exp_rel2=4, perc_rel2=3,
             exp_res1=3, perc_res1=4, exp_res2=4, perc_res2=4),
    ],
)  # fmt: skip
def test_a_scored_gap_of_exactly_the_band_is_met_despite_float_rounding(
    answers: dict[str, Any],
) -> None:
    weights = {"reliability": 0.2, "responsiveness": 0.2, "empathy": 0.6}
    table = survey_responses_table(CATALOG)
    scored = survey_response_scores(
        survey_responses(response("c1", utc(2026, 11, 25, 9), **answers)), CATALOG, weights
    ).select(table.schema.names())
    result = quality(NO_CONTACTS, scored, "service_level")
    assert_equal(result, expected({"customer_id": ["c1"], "service_level": ["met"]}))


def test_service_level_uses_the_band_given() -> None:
    responses = survey_responses(response("c1", utc(2026, 11, 25, 9), service_gap=0.75))
    result = quality(NO_CONTACTS, responses, "service_level", band=1.0)
    assert_equal(result, expected({"customer_id": ["c1"], "service_level": ["met"]}))


def test_service_level_compares_the_mean_over_responses() -> None:
    responses = survey_responses(
        response("c1", utc(2026, 11, 22, 9), service_gap=2.0),
        response("c1", utc(2026, 11, 23, 9), service_gap=-1.0),
    )  # mean 0.5: exactly the band
    result = quality(NO_CONTACTS, responses, "service_gap", "service_level")
    assert_equal(
        result, expected({"customer_id": ["c1"], "service_gap": [0.5], "service_level": ["met"]})
    )


def test_nps_last_is_from_the_latest_response_that_has_one() -> None:
    responses = survey_responses(
        response("c1", utc(2026, 11, 23, 9), nps=3),
        response("c1", utc(2026, 11, 21, 9), nps=10),
        response("c1", utc(2026, 11, 25, 9), nps=None, csat=4),
    )
    result = quality(NO_CONTACTS, responses, "nps_last", "nps_last_group")
    assert_equal(
        result, expected({"customer_id": ["c1"], "nps_last": [3], "nps_last_group": ["detractor"]})
    )


def test_nps_last_tie_on_submitted_at_goes_to_the_larger_response_id() -> None:
    responses = survey_responses(
        response("c1", utc(2026, 11, 23, 9), response_id="r_b", nps=8),
        response("c1", utc(2026, 11, 23, 9), response_id="r_a", nps=10),
    )
    result = quality(NO_CONTACTS, responses, "nps_last", "nps_last_group")
    assert_equal(
        result, expected({"customer_id": ["c1"], "nps_last": [8], "nps_last_group": ["passive"]})
    )


def test_csat_and_ces_means_ignore_nulls() -> None:
    responses = survey_responses(
        response("c1", utc(2026, 11, 22, 9), csat=5, ces=None),
        response("c1", utc(2026, 11, 23, 9), csat=None, ces=2),
        response("c1", utc(2026, 11, 24, 9), csat=2, ces=7),
    )
    result = quality(NO_CONTACTS, responses, "csat_mean", "ces_mean")
    assert_equal(result, expected({"customer_id": ["c1"], "csat_mean": [3.5], "ces_mean": [4.5]}))


def test_customer_with_interactions_only() -> None:
    contacts = interactions(contact("c1", utc(2026, 11, 25, 9), queue_seconds=30.0))
    columns = ("n_responses", "service_gap", "service_level", "nps_last", "nps_last_group",
               "csat_mean", "n_interactions", "fcr_rate", "avg_queue_seconds")  # fmt: skip
    result = quality(contacts, NO_RESPONSES, *columns)
    wanted = expected(
        {
            "customer_id": ["c1"],
            "n_responses": [0],
            "service_gap": [None],
            "service_level": ["unknown"],
            "nps_last": [None],
            "nps_last_group": [None],
            "csat_mean": [None],
            "n_interactions": [1],
            "fcr_rate": [1.0],
            "avg_queue_seconds": [30.0],
        }
    )
    assert_equal(result, wanted)


def test_customer_with_responses_only() -> None:
    responses = survey_responses(response("c1", utc(2026, 11, 25, 9), nps=9, service_gap=1.0))
    columns = ("n_responses", "service_level", "nps_last_group", "n_interactions", "fcr_rate",
               "repeat_contact_rate_7d", "avg_queue_seconds", "avg_handle_seconds")  # fmt: skip
    result = quality(NO_CONTACTS, responses, *columns)
    wanted = expected(
        {
            "customer_id": ["c1"],
            "n_responses": [1],
            "service_level": ["exceeded"],
            "nps_last_group": ["promoter"],
            "n_interactions": [0],
            "fcr_rate": [None],
            "repeat_contact_rate_7d": [None],
            "avg_queue_seconds": [None],
            "avg_handle_seconds": [None],
        }
    )
    assert_equal(result, wanted)


# ---------------------------------------------------------------------------------------
# customer_quality: interaction side


def rates(*contacts: dict[str, Any]) -> pl.DataFrame:
    return quality(interactions(*contacts), NO_RESPONSES, "fcr_rate", "repeat_contact_rate_7d")


def expected_rates(fcr_rate: float, repeat_contact_rate_7d: float) -> pl.DataFrame:
    return expected(
        {
            "customer_id": ["c1"],
            "fcr_rate": [fcr_rate],
            "repeat_contact_rate_7d": [repeat_contact_rate_7d],
        }
    )


def test_a_contact_exactly_7_days_later_is_a_repeat() -> None:
    result = rates(contact("c1", utc(2026, 11, 15, 9)), contact("c1", utc(2026, 11, 22, 9)))
    assert_equal(result, expected_rates(fcr_rate=0.5, repeat_contact_rate_7d=0.5))


def test_a_contact_7_days_and_1_microsecond_later_is_not_a_repeat() -> None:
    first = utc(2026, 11, 15, 0)
    later = first + datetime.timedelta(days=7, microseconds=1)
    result = rates(contact("c1", first), contact("c1", later))
    assert_equal(result, expected_rates(fcr_rate=1.0, repeat_contact_rate_7d=0.0))


def test_a_same_reason_recontact_is_not_a_first_contact_resolution() -> None:
    result = rates(
        contact("c1", utc(2026, 11, 22, 9), "billing"),
        contact("c1", utc(2026, 11, 23, 9), "billing"),
    )
    assert_equal(result, expected_rates(fcr_rate=0.5, repeat_contact_rate_7d=0.5))


def test_a_different_reason_recontact_keeps_the_first_contact_resolution() -> None:
    result = rates(
        contact("c1", utc(2026, 11, 22, 9), "billing"), contact("c1", utc(2026, 11, 23, 9), "order")
    )
    assert_equal(result, expected_rates(fcr_rate=1.0, repeat_contact_rate_7d=0.5))


def test_a_null_reason_matches_no_other_contact() -> None:
    result = rates(
        contact("c1", utc(2026, 11, 22, 9), None), contact("c1", utc(2026, 11, 23, 9), None)
    )
    assert_equal(result, expected_rates(fcr_rate=1.0, repeat_contact_rate_7d=0.5))


def test_an_unresolved_contact_is_not_a_first_contact_resolution() -> None:
    result = rates(
        contact("c1", utc(2026, 11, 21, 9), "billing", resolved=False),
        contact("c1", utc(2026, 11, 22, 9), "order"),
    )
    assert_equal(result, expected_rates(fcr_rate=0.5, repeat_contact_rate_7d=0.5))


def test_contacts_starting_at_the_same_instant_do_not_repeat_each_other() -> None:
    # i2 comes after i1 in the (started_at, interaction_id) order, but does not start in
    # (t, t + 7 days]: the spec's interval decides.
    at = utc(2026, 11, 22, 9)
    result = rates(
        contact("c1", at, "billing", interaction_id="i1"),
        contact("c1", at, "billing", interaction_id="i2"),
    )
    assert_equal(result, expected_rates(fcr_rate=1.0, repeat_contact_rate_7d=0.0))


def test_contacts_starting_at_the_same_instant_are_all_repeated_by_a_later_one() -> None:
    at = utc(2026, 11, 22, 9)
    result = rates(
        contact("c1", at, "billing"),
        contact("c1", at, "billing"),
        contact("c1", at, "order"),
        contact("c1", at + datetime.timedelta(hours=1), "billing"),
    )
    # all three at `at` are repeated; the two billing ones also lose their FCR.
    assert_equal(result, expected_rates(fcr_rate=2 / 4, repeat_contact_rate_7d=3 / 4))


def test_contacts_of_other_customers_are_not_repeats() -> None:
    contacts = interactions(
        contact("c1", utc(2026, 11, 22, 9), "billing"),
        contact("c2", utc(2026, 11, 23, 9), "billing"),
    )
    result = quality(contacts, NO_RESPONSES, "fcr_rate", "repeat_contact_rate_7d")
    wanted = expected(
        {"customer_id": ["c1", "c2"], "fcr_rate": [1.0, 1.0], "repeat_contact_rate_7d": [0.0, 0.0]}
    )
    assert_equal(result, wanted)


def test_average_queue_and_handle_times_ignore_nulls() -> None:
    contacts = interactions(
        contact("c1", utc(2026, 11, 22, 9), queue_seconds=10.0, handle_seconds=60.0),
        contact("c1", utc(2026, 11, 23, 9), queue_seconds=None, handle_seconds=120.0),
        contact("c1", utc(2026, 11, 24, 9), queue_seconds=30.0, handle_seconds=30.0),
    )
    result = quality(
        contacts, NO_RESPONSES, "n_interactions", "avg_queue_seconds", "avg_handle_seconds"
    )
    wanted = expected(
        {
            "customer_id": ["c1"],
            "n_interactions": [3],
            "avg_queue_seconds": [20.0],
            "avg_handle_seconds": [70.0],
        }
    )
    assert_equal(result, wanted)


# ---------------------------------------------------------------------------------------
# Properties: the interaction rates against a brute-force reading of SPEC §4.2

WINDOW_FIRST_INSTANT = datetime.datetime.combine(
    AS_OF - datetime.timedelta(days=WINDOW_DAYS - 1), datetime.time(), UTC
)
SEVEN_DAYS = datetime.timedelta(days=7)

# Offsets on a 6-hour grid around the window (ties and exact 7-day gaps are common), plus
# 0 or 1 µs so that "7 days + 1 µs" occurs too.
contact_strategy = st.builds(
    lambda customer, slot, nudge, reason, resolved: contact(
        customer,
        WINDOW_FIRST_INSTANT + datetime.timedelta(hours=6 * slot, microseconds=nudge),
        reason,
        resolved=resolved,
    ),
    st.sampled_from(["a", "b", "c"]),
    st.integers(min_value=-8, max_value=WINDOW_DAYS * 4 + 8),
    st.sampled_from([0, 1]),
    st.sampled_from(["billing", "order", None]),
    st.booleans(),
)


def brute_force_rates(contacts: list[dict[str, Any]]) -> dict[str, tuple[int, float, float]]:
    """n_interactions, fcr_rate, repeat_contact_rate_7d per customer, pair by pair."""
    in_window = [
        c
        for c in contacts
        if WINDOW_FIRST_INSTANT
        <= c["started_at"]
        < WINDOW_FIRST_INSTANT + datetime.timedelta(days=WINDOW_DAYS)
    ]
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in in_window:
        by_customer[c["customer_id"]].append(c)
    result = {}
    for customer, own in by_customer.items():

        def followed(c: dict[str, Any], same_reason: bool, own: list[dict[str, Any]] = own) -> bool:
            return any(
                c["started_at"] < o["started_at"] <= c["started_at"] + SEVEN_DAYS
                and (not same_reason or (c["reason"] is not None and o["reason"] == c["reason"]))
                for o in own
            )

        n = len(own)
        fcr = sum(c["is_resolved"] and not followed(c, same_reason=True) for c in own) / n
        repeat = sum(followed(c, same_reason=False) for c in own) / n
        result[customer] = (n, fcr, repeat)
    return result


@settings(max_examples=200, deadline=None)
@given(st.lists(contact_strategy, max_size=25))
def test_interaction_rates_match_a_brute_force_reading_of_the_spec(
    contacts: list[dict[str, Any]],
) -> None:
    result = quality(
        interactions(*contacts),
        NO_RESPONSES,
        "n_interactions",
        "fcr_rate",
        "repeat_contact_rate_7d",
    )
    wanted = brute_force_rates(contacts)
    assert result["customer_id"].to_list() == sorted(wanted)
    assert {row[0]: row[1:] for row in result.iter_rows()} == wanted


@settings(max_examples=100, deadline=None)
@given(st.lists(contact_strategy, min_size=1, max_size=25))
def test_rates_are_shares_and_fcr_needs_resolution(contacts: list[dict[str, Any]]) -> None:
    result = quality(
        interactions(*contacts),
        NO_RESPONSES,
        "n_interactions",
        "fcr_rate",
        "repeat_contact_rate_7d",
    )
    assert result["customer_id"].is_unique().all()
    resolved_share = (
        interactions(*contacts)
        .filter(pl.col("interaction_date").is_between(WINDOW_FIRST_INSTANT.date(), AS_OF))
        .group_by("customer_id")
        .agg(resolved=pl.col("is_resolved").mean())
        .collect()
    )
    joined = result.join(resolved_share, on="customer_id", how="left")
    assert joined.filter(
        (pl.col("fcr_rate") < 0) | (pl.col("fcr_rate") > pl.col("resolved"))
        | (pl.col("repeat_contact_rate_7d") < 0) | (pl.col("repeat_contact_rate_7d") > 1)
    ).is_empty()  # fmt: skip


answer = st.one_of(st.none(), st.integers(min_value=1, max_value=7))


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({column: answer for column in CATALOG.answer_columns}))
def test_service_gap_lies_between_the_dimension_gaps(answers: dict[str, int | None]) -> None:
    gaps = [f"{d}_gap" for d in CATALOG.dimensions]
    row = scores(survey_answers(**answers), *gaps, "service_gap").row(0, named=True)
    answered = [row[g] for g in gaps if row[g] is not None]
    if not answered:
        assert row["service_gap"] is None
    else:
        assert min(answered) - 1e-12 <= row["service_gap"] <= max(answered) + 1e-12
