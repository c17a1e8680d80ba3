"""quality_drivers (SPEC §6): qualifying responses, performance and gaps, the < 30 rule,
quadrants split at the means (equal = low), and the importances from relative weights."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import polars as pl
import pytest

from servio.key_drivers import relative_weights
from servio.schemas.snapshot_tables import QUALITY_DRIVERS
from servio.transforms.drivers import MIN_RESPONSES, driver_responses, quality_drivers
from servio.value_snapshot import driver_importances
from tests.value_frames import AS_OF, CATALOG, WINDOW_DAYS, response, survey_responses

DIMENSIONS = list(CATALOG.dimensions)


def answered(
    customer: str, perceptions: list[float], gaps: list[float | None] | None = None, **kw: Any
) -> dict[str, Any]:
    gaps = gaps or [None] * len(DIMENSIONS)
    scores = {f"{d}_perception": p for d, p in zip(DIMENSIONS, perceptions, strict=True)}
    scores |= {f"{d}_gap": g for d, g in zip(DIMENSIONS, gaps, strict=True)}
    return response(customer, **kw, **scores)


def qualifying(*responses: dict[str, Any]) -> pl.DataFrame:
    return driver_responses(
        survey_responses(*responses), AS_OF, window_days=WINDOW_DAYS, catalog=CATALOG
    ).collect()


def drivers(responses: pl.DataFrame, importances: dict[str, float] | None) -> pl.DataFrame:
    return quality_drivers(responses.lazy(), importances, AS_OF, catalog=CATALOG).collect()


def by_dimension(frame: pl.DataFrame, column: str) -> dict[str, Any]:
    return dict(zip(frame["dimension"], frame[column], strict=True))


def test_only_window_responses_with_nps_and_every_perception_qualify() -> None:
    full = [5.0, 4.0, 6.0, 5.0, 3.0]
    got = qualifying(
        answered("a", full, nps=9),
        answered("b", full, nps=None),
        answered("c", [5.0, None, 6.0, 5.0, 3.0], nps=7),  # type: ignore[list-item]
        answered("d", full, nps=3, days_ago=WINDOW_DAYS),  # the window's open start
        answered("e", full, nps=0, days_ago=-1),  # after D
        answered("f", full, nps=10, days_ago=WINDOW_DAYS - 1),
    )
    assert got["nps"].to_list() == [9, 10]


def test_performance_and_gap_are_means_and_importance_is_null_under_30() -> None:
    responses = qualifying(
        answered("a", [5, 4, 6, 5, 3], [1, -1, 0, None, 2], nps=9),
        answered("b", [3, 4, 2, 5, 7], [0, -2, None, None, 1], nps=4),
    )
    got = drivers(responses, {d: 0.1 for d in DIMENSIONS})
    assert got.schema == QUALITY_DRIVERS.schema
    assert got["dimension"].to_list() == DIMENSIONS
    assert by_dimension(got, "performance") == dict(
        zip(DIMENSIONS, [4.0, 4.0, 4.0, 5.0, 5.0], strict=True)
    )
    assert by_dimension(got, "mean_gap") == dict(
        zip(DIMENSIONS, [0.5, -1.5, 0.0, None, 1.5], strict=True)
    )
    assert got["n_responses"].to_list() == [2] * 5
    assert got["importance"].null_count() == got["quadrant"].null_count() == 5


def frame_of(n: int) -> pl.DataFrame:
    rng = random.Random(n)
    return qualifying(
        *(
            answered(
                f"c{i}", [float(rng.randint(1, 7)) for _ in DIMENSIONS], nps=rng.randint(0, 10)
            )
            for i in range(n)
        )
    )


def test_exactly_30_responses_is_enough() -> None:
    weights = dict(zip(DIMENSIONS, [0.3, 0.1, 0.1, 0.1, 0.1], strict=True))
    assert drivers(frame_of(MIN_RESPONSES - 1), weights)["importance"].null_count() == 5
    got = drivers(frame_of(MIN_RESPONSES), weights)
    assert by_dimension(got, "importance") == weights
    assert got["n_responses"].to_list() == [30] * 5


def with_performance(performance: list[float]) -> pl.DataFrame:
    """30 identical responses with these perceptions."""
    return qualifying(*(answered(f"c{i}", performance, nps=8) for i in range(MIN_RESPONSES)))


def test_quadrants_split_at_the_means() -> None:
    responses = with_performance([2.0, 6.0, 6.0, 2.0, 4.5])  # mean 4.1
    importances = dict(zip(DIMENSIONS, [0.30, 0.30, 0.01, 0.01, 0.05], strict=True))  # mean 0.134
    got = drivers(responses, importances)
    assert by_dimension(got, "quadrant") == dict(
        zip(
            DIMENSIONS,
            ["fix_first", "keep_up", "possible_overkill", "low_priority", "possible_overkill"],
            strict=True,
        )
    )


def test_a_value_equal_to_the_mean_counts_as_low() -> None:
    # every dimension at the mean: all low on both axes
    responses = with_performance([4.0, 4.0, 4.0, 4.0, 4.0])
    importances = dict(zip(DIMENSIONS, [0.1, 0.1, 0.1, 0.1, 0.1], strict=True))
    got = drivers(responses, importances)
    assert got["quadrant"].to_list() == ["low_priority"] * 5
    responses = with_performance([3.0, 5.0, 4.0, 4.0, 4.0])  # mean 4: 4.0 is low
    importances = dict(zip(DIMENSIONS, [0.1, 0.1, 0.3, 0.1, 0.4], strict=True))  # mean 0.2
    got = drivers(responses, importances)
    assert by_dimension(got, "quadrant") == dict(
        zip(
            DIMENSIONS,
            ["low_priority", "possible_overkill", "fix_first", "low_priority", "fix_first"],
            strict=True,
        )
    )


def test_float_noise_at_the_mean_is_a_tie() -> None:
    importances = dict(
        zip(DIMENSIONS, [0.1 + 0.2, 0.3, 0.3, 0.30000000000000004, 0.3], strict=True)
    )
    got = drivers(with_performance([4.0] * 5), importances)
    assert got["quadrant"].to_list() == ["low_priority"] * 5


def test_importances_are_the_relative_weights_of_the_perceptions_on_nps() -> None:
    responses = frame_of(80)
    got = driver_importances(responses, CATALOG)
    assert got is not None
    X = responses.select(f"{d}_perception" for d in DIMENSIONS).to_numpy()
    want = relative_weights(X, responses["nps"].to_numpy().astype(np.float64))
    assert want is not None
    assert list(got.values()) == pytest.approx(list(want), rel=1e-12)
    assert driver_importances(frame_of(MIN_RESPONSES - 1), CATALOG) is None


def test_importances_need_every_dimension() -> None:
    with pytest.raises(ValueError, match="importances"):
        drivers(frame_of(MIN_RESPONSES), {"tangibles": 1.0})
