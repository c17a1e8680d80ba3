"""Johnson's relative weights (servio/key_drivers.py) against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from servio.key_drivers import relative_weights

# A small frame: five perception scores (1–7) and an NPS answer for twelve responses.
PERCEPTIONS = np.array(
    [
        [5, 4, 6, 5, 4],
        [3, 2, 4, 4, 3],
        [6, 6, 5, 6, 5],
        [2, 3, 3, 2, 4],
        [7, 6, 7, 6, 6],
        [4, 5, 4, 3, 5],
        [5, 3, 5, 6, 4],
        [1, 2, 2, 3, 2],
        [6, 5, 6, 7, 7],
        [3, 4, 3, 4, 2],
        [4, 4, 6, 5, 5],
        [5, 6, 4, 4, 6],
    ],
    dtype=np.float64,
)
NPS = np.array([8, 4, 9, 3, 10, 6, 7, 1, 9, 5, 7, 8], dtype=np.float64)


def johnson_by_eigendecomposition(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Johnson (2000) step by step: the correlation matrix's eigenvectors Q and eigenvalues
    Δ², Λ = QΔQ' (correlations of X with the orthogonal Z), β = Λ⁻¹·r_xy, ε_j = Σ_k Λ_jk²β_k²."""
    corr = np.corrcoef(np.column_stack([X, y]), rowvar=False)
    r_xx, r_xy = corr[:-1, :-1], corr[:-1, -1]
    eigenvalues, Q = np.linalg.eig(r_xx)
    lam = Q @ np.diag(np.sqrt(eigenvalues)) @ Q.T
    beta = np.linalg.solve(lam, r_xy)
    return np.asarray((lam**2) @ (beta**2))


def r_squared(X: np.ndarray, y: np.ndarray) -> float:
    design = np.column_stack([np.ones(len(y)), X])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    return float(1 - residual @ residual / ((y - y.mean()) @ (y - y.mean())))


def test_small_frame_against_a_direct_eigen_decomposition() -> None:
    ours = relative_weights(PERCEPTIONS, NPS)
    assert ours is not None
    np.testing.assert_allclose(ours, johnson_by_eigendecomposition(PERCEPTIONS, NPS), rtol=1e-9)
    assert ours.sum() == pytest.approx(r_squared(PERCEPTIONS, NPS), rel=1e-9)


def test_uncorrelated_predictors_weigh_their_squared_correlation() -> None:
    X = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=np.float64)  # orthogonal columns
    y = np.array([3.0, 1.0, 0.0, -2.0])
    weights = relative_weights(X, y)
    assert weights is not None
    expected = [np.corrcoef(X[:, j], y)[0, 1] ** 2 for j in range(2)]
    np.testing.assert_allclose(weights, expected, rtol=1e-12)


def test_a_constant_outcome_has_no_weights_and_a_constant_predictor_weighs_zero() -> None:
    assert relative_weights(PERCEPTIONS, np.full(len(NPS), 7.0)) is None
    X = PERCEPTIONS.copy()
    X[:, 2] = 4.0
    weights = relative_weights(X, NPS)
    assert weights is not None
    assert weights[2] == 0.0
    others = relative_weights(np.delete(X, 2, axis=1), NPS)
    assert others is not None
    np.testing.assert_allclose(np.delete(weights, 2), others, rtol=1e-12)


def test_collinear_predictors_still_sum_to_r_squared() -> None:
    X = np.column_stack([PERCEPTIONS[:, :3], PERCEPTIONS[:, 0] + PERCEPTIONS[:, 1]])
    weights = relative_weights(X, NPS)
    assert weights is not None
    assert weights.sum() == pytest.approx(r_squared(X, NPS), rel=1e-8)


@given(
    data=hnp.arrays(np.float64, (40, 6), elements=st.integers(1, 7).map(float)),
)
@settings(max_examples=150, deadline=None)
def test_weights_are_non_negative_and_sum_to_r_squared(data: np.ndarray) -> None:
    X, y = data[:, :5], data[:, 5]
    assume(np.ptp(y) > 0)
    weights = relative_weights(X, y)
    assert weights is not None
    assert (weights >= -1e-12).all()
    assert weights.sum() == pytest.approx(r_squared(X, y), rel=1e-7, abs=1e-9)
