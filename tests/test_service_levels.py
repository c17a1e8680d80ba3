"""service_levels (SPEC §6): SLA breach with null queues, percentiles against numpy, FCR as
customer_quality counts it, the `all` row, and the snapshot-wide NPS / CSAT / CES."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servio.schemas.channels import DEFAULT_SLA
from servio.schemas.snapshot_tables import SERVICE_LEVELS
from servio.transforms.quality import customer_quality
from servio.transforms.service import service_counts, service_levels
from tests.value_frames import (
    AS_OF,
    CATALOG,
    WINDOW_DAYS,
    contact,
    interactions,
    response,
    survey_responses,
)


def levels(
    *contacts: dict[str, Any],
    responses: tuple[dict[str, Any], ...] = (),
    sla: dict[str, float | None] | None = None,
) -> pl.DataFrame:
    return service_levels(
        service_counts(interactions(*contacts), AS_OF, window_days=WINDOW_DAYS),
        survey_responses(*responses),
        AS_OF,
        window_days=WINDOW_DAYS,
        sla_targets=DEFAULT_SLA if sla is None else sla,
    ).collect()


def of(frame: pl.DataFrame, channel: str) -> dict[str, Any]:
    return frame.filter(pl.col("channel") == channel).row(0, named=True)


def test_one_row_per_channel_with_a_target_then_all() -> None:
    got = levels(contact("a", channel="web", queue_seconds=None))
    assert got.schema == SERVICE_LEVELS.schema
    assert got["channel"].to_list() == ["phone", "chat", "email", "visit", "all"]
    assert got["as_of_date"].unique().to_list() == [AS_OF]
    phone = of(got, "phone")  # a channel without a contact: zero, and nothing to rate
    assert phone["n_interactions"] == 0
    assert phone["sla_breach_rate"] is None and phone["p50_queue_seconds"] is None
    assert of(got, "all")["n_interactions"] == 1


def test_breach_rate_counts_known_queues_only() -> None:
    got = levels(
        contact("a", channel="phone", queue_seconds=61),
        contact("a", channel="phone", queue_seconds=60, days_ago=1),  # = target: no breach
        contact("b", channel="phone", queue_seconds=None),
        contact("b", channel="phone", queue_seconds=5, days_ago=2),
    )
    phone = of(got, "phone")
    assert phone["n_interactions"] == 4
    assert phone["sla_breach_rate"] == pytest.approx(1 / 3)


def test_all_row_breach_rate_is_over_channels_with_a_target() -> None:
    got = levels(
        contact("a", channel="chat", queue_seconds=31),
        contact("a", channel="email", queue_seconds=10, days_ago=1),
        contact("b", channel="web", queue_seconds=99_999),  # no target: not judged
        contact("b", channel="web", queue_seconds=None, days_ago=1),
    )
    everything = of(got, "all")
    assert everything["n_interactions"] == 4
    assert everything["sla_breach_rate"] == pytest.approx(1 / 2)
    assert everything["p50_queue_seconds"] == pytest.approx(31.0)  # 10, 31, 99999


def test_a_target_can_be_removed_or_given_to_web() -> None:
    got = levels(
        contact("a", channel="web", queue_seconds=20),
        sla={**DEFAULT_SLA, "phone": None, "web": 10},
    )
    assert got["channel"].to_list() == ["chat", "email", "visit", "web", "all"]
    assert of(got, "web")["sla_breach_rate"] == 1.0


def test_an_unknown_channel_target_is_refused() -> None:
    with pytest.raises(ValueError, match="fax"):
        levels(contact("a"), sla={"fax": 1.0})


@given(
    queues=st.lists(
        st.one_of(st.none(), st.floats(0, 604_800), st.integers(0, 40).map(float)),
        min_size=1,
        max_size=40,
    )
)
@settings(max_examples=100, deadline=None)
def test_percentiles_and_breach_rate_match_numpy(queues: list[float | None]) -> None:
    contacts = [
        contact("a", days_ago=n % 300, hour=n % 24, channel="chat", queue_seconds=q)
        for n, q in enumerate(queues)
    ]
    chat = of(levels(*contacts), "chat")
    known = np.array([q for q in queues if q is not None])
    if known.size == 0:
        assert chat["p50_queue_seconds"] is None and chat["sla_breach_rate"] is None
        return
    assert chat["p50_queue_seconds"] == pytest.approx(np.percentile(known, 50), rel=1e-12)
    assert chat["p90_queue_seconds"] == pytest.approx(np.percentile(known, 90), rel=1e-12)
    assert chat["sla_breach_rate"] == pytest.approx(np.mean(known > 30))


def test_fcr_is_counted_as_customer_quality_counts_it() -> None:
    contacts = (
        contact("a", days_ago=10, channel="phone", reason="billing"),
        contact("a", days_ago=8, channel="chat", reason="billing"),  # phone's is not FCR
        contact("a", days_ago=1, channel="chat", reason="order"),
        contact("b", days_ago=5, channel="phone", reason=None),
        contact("b", days_ago=4, channel="phone", reason=None),  # null reason never matches
        contact("b", days_ago=3, channel="phone", resolved=False),
    )
    got = levels(*contacts)
    assert of(got, "phone")["fcr_rate"] == pytest.approx(2 / 4)
    assert of(got, "chat")["fcr_rate"] == 1.0
    quality = customer_quality(
        interactions(*contacts),
        survey_responses(),
        AS_OF,
        window_days=WINDOW_DAYS,
        band=0.5,
        catalog=CATALOG,
    ).collect()
    pooled = (quality["fcr_rate"] * quality["n_interactions"]).sum() / quality[
        "n_interactions"
    ].sum()
    assert of(got, "all")["fcr_rate"] == pytest.approx(pooled)


def test_window_bounds_apply_to_contacts_and_responses() -> None:
    got = levels(
        contact("a", days_ago=WINDOW_DAYS),  # open start: out
        contact("a", days_ago=-1),  # after D: out
        contact("a", days_ago=0),
        responses=(response("a", days_ago=WINDOW_DAYS, nps=0), response("a", nps=10)),
    )
    assert of(got, "all")["n_interactions"] == 1
    assert of(got, "all")["nps"] == 100.0


def test_snapshot_wide_nps_csat_ces_on_every_row() -> None:
    responses = (
        response("a", nps=10, csat=5, ces=1),
        response("b", nps=9, csat=4),
        response("c", nps=8, ces=3),
        response("d", nps=6, csat=1),
        response("e", nps=None, csat=3, ces=2),
    )
    got = levels(contact("a"), responses=responses)
    # 4 scored: 2 promoters, 1 passive, 1 detractor → (2 − 1) ÷ 4 = 25 points
    assert got["nps"].to_list() == [25.0] * got.height
    assert got["csat_mean"].to_list() == [pytest.approx(13 / 4)] * got.height
    assert got["ces_mean"].to_list() == [pytest.approx(2.0)] * got.height


@given(scores=st.lists(st.one_of(st.none(), st.integers(0, 10)), min_size=1, max_size=30))
@settings(max_examples=100, deadline=None)
def test_nps_is_promoters_minus_detractors_in_points(scores: list[int | None]) -> None:
    got = levels(contact("a"), responses=tuple(response("a", nps=s) for s in scores))
    scored = [s for s in scores if s is not None]
    if not scored:
        assert got["nps"].null_count() == got.height
        return
    want = 100 * (sum(s >= 9 for s in scored) - sum(s <= 6 for s in scored)) / len(scored)
    assert got["nps"].to_list() == [pytest.approx(want)] * got.height


def test_no_response_gives_null_survey_figures() -> None:
    got = levels(contact("a"))
    assert got["nps"].null_count() == got["csat_mean"].null_count() == got.height
