"""Johnson's relative weights (Johnson 2000): how much of R² each predictor carries.

The numerical half of SPEC §6 `quality_drivers` (numpy only, no Polars, no I/O). The
predictors are replaced by their closest orthogonal counterparts Z = X·R^(−½); y is regressed
on Z (weights β = R^(−½)·r_xy) and each Z is mapped back to the X's through Λ = R^(½), the
correlations between X and Z. Predictor j's weight is Σ_k Λ_jk²·β_k², and the weights sum to
the R² of the ordinary regression of y on X.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
# Eigenvalues below this share of the largest are taken as exactly 0 (collinear predictors):
# R^(−½) becomes a pseudo-inverse, and the weights still sum to R² of the fitted regression.
RANK_TOLERANCE = 1e-10


def relative_weights(predictors: Array, outcome: Array) -> Array | None:
    """One weight per column of `predictors` (n × k), ≥ 0, summing to R² of `outcome` on them.

    A predictor with no variance explains nothing: weight 0. None when the outcome has no
    variance or fewer than two rows are given (R² is undefined).
    """
    X = np.asarray(predictors, np.float64)
    y = np.asarray(outcome, np.float64)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"predictors {X.shape} and outcome {y.shape} do not match")
    weights = np.zeros(X.shape[1])
    if X.shape[0] < 2 or np.ptp(y) == 0:
        return None
    varying = np.ptp(X, axis=0) > 0
    if not varying.any():
        return weights
    Xs = _standardised(X[:, varying])
    ys = _standardised(y[:, None])[:, 0]
    n = X.shape[0]
    r_xx = Xs.T @ Xs / (n - 1)
    r_xy = Xs.T @ ys / (n - 1)
    values, vectors = np.linalg.eigh(r_xx)
    kept = values > RANK_TOLERANCE * values.max()
    root = np.sqrt(np.where(kept, values, 0.0))
    inverse_root = np.where(kept, 1 / np.where(kept, root, 1.0), 0.0)
    lam = vectors @ np.diag(root) @ vectors.T  # R^(½), symmetric
    beta = vectors @ np.diag(inverse_root) @ vectors.T @ r_xy
    weights[varying] = (lam**2) @ (beta**2)
    return weights


def _standardised(values: Array) -> Array:
    centred = values - values.mean(axis=0)
    spread = centred.std(axis=0, ddof=1)
    return np.asarray(centred / spread, np.float64)
