"""BG/NBD and Gamma-Gamma (Fader, Hardie & Lee 2005) fitted by maximum likelihood, and scoring.

Numerical half of SPEC §6 `customer_value` / `value_model`: numpy + scipy, no Polars, no I/O.
Each log-likelihood is vectorised with its analytic gradient and maximised by L-BFGS-B over
the logarithms of the parameters (all positive). Customers with the same inputs are fitted as
one row with a weight, so the cost grows with the distinct (x, t_x, T) triples, not the
customers. Why this and not pymc-marketing or lifetimes: ARCHITECTURE.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from servio.value_optimiser import Array, Objective, maximise, verdict

# scipy is imported inside the functions that use it: it costs ~0.4 s, and every servio process
# imports this module (through the snapshot step) while only a snapshot's fits need scipy (an
# idle run, a served ingest run, a killed run's rerun that only ingests do not).
if TYPE_CHECKING:
    from scipy import optimize

BG_NBD = "bg_nbd"
GAMMA_GAMMA = "gamma_gamma"
# |a − 1| below this: E[Y(t)] is evaluated at 1 ± A_NEAR_ONE and averaged (its formula has a
# removable 0/0 at a = 1; the mean of the two sides is exact to O(A_NEAR_ONE²)).
A_NEAR_ONE = 1e-4
R_NUDGE = 1e-10  # relative change of r where scipy's hyp2f1 fails on an exact integer case
# |a + b + x − 1| below this (x = 0, a + b = 1): E[Y(t)]'s 2F1 is at its pole, so its limit is
# taken instead (scipy's hyp2f1 is exact to 8 digits at 1e-12 from the pole, inf at 1e-15).
LOWER_NEAR_ZERO = 1e-12


@dataclass(frozen=True)
class FitResult:
    """One fitted model: its parameters (by name), how many customers, and whether it converged.

    `converged` is false when the optimiser did not report success, when the log-likelihood
    or a parameter is not finite, or when a parameter ran to the edge of the search box; the
    parameters are then kept for the record but must not be used to score anyone.
    """

    model: str
    params: dict[str, float]
    n_customers: int
    log_likelihood: float | None
    converged: bool
    message: str
    iterations: int = 0
    seconds: float = field(default=0.0, compare=False)


def not_fitted(model: str, names: tuple[str, ...], n_customers: int, why: str) -> FitResult:
    """The record of a fit that could not be attempted (e.g. no customer to fit)."""
    return FitResult(model, dict.fromkeys(names, float("nan")), n_customers, None, False, why)


# ---------------------------------------------------------------------------------------------
# BG/NBD


@dataclass(frozen=True)
class _Triples:
    """Distinct (x, t_x, T) rows with their customer counts, in ascending order."""

    x: Array
    t_x: Array
    T: Array
    weight: Array
    inverse: NDArray[np.intp]  # row of each input customer

    @classmethod
    def of(cls, x: Array, t_x: Array, T: Array) -> _Triples:
        # Each column to the codes of its distinct values, the three codes to one int64 key:
        # sorting one integer column is far faster than np.unique(axis=0) on rows.
        columns = [np.unique(np.asarray(v, np.float64), return_inverse=True) for v in (x, t_x, T)]
        key = np.zeros(len(columns[0][1]), np.int64)
        for distinct, codes in columns:
            key = key * len(distinct) + codes.ravel()
        _, first, inverse, counts = np.unique(
            key, return_index=True, return_inverse=True, return_counts=True
        )
        (dx, cx), (dt, ct), (dT, cT) = ((d, c.ravel()[first]) for d, c in columns)
        return cls(dx[cx], dt[ct], dT[cT], counts.astype(np.float64), inverse.ravel())


@dataclass(frozen=True)
class _Column:
    """A data column as its distinct values plus, per row, the position of its value: a
    special function of x, t_x or T (a few hundred distinct days) is evaluated once per
    distinct value, not once per row."""

    values: Array
    distinct: Array
    index: NDArray[np.intp]

    @classmethod
    def of(cls, values: Array) -> _Column:
        values = np.asarray(values, np.float64)
        distinct, index = np.unique(values, return_inverse=True)
        return cls(values, distinct, index.ravel())

    def map(self, fn: Callable[[Array], Array]) -> Array:
        return np.asarray(fn(self.distinct)[self.index], np.float64)


def _columns(x: Array, t_x: Array, T: Array) -> tuple[_Column, _Column, _Column]:
    return _Column.of(x), _Column.of(t_x), _Column.of(T)


def _bg_nbd_terms(
    log_params: Array, x: _Column, t_x: _Column, T: _Column
) -> tuple[Array, Array, Array, Array, Array]:
    """Per row: log-likelihood and its derivatives by log r, log α, log a, log b."""
    from scipy import special

    r, alpha, a, b = np.exp(log_params)
    xs = x.values
    buys = xs > 0
    ln_at = T.map(lambda v: np.log(alpha + v))
    ln_atx = t_x.map(lambda v: np.log(alpha + v))
    a3 = -(r + xs) * ln_at
    # b + x − 1 > 0 whenever x ≥ 1; the x = 0 rows have no second term.
    bx1 = x.map(lambda v: np.where(v > 0, b + v - 1, 1.0))
    a4 = np.where(buys, np.log(a) - np.log(bx1) - (r + xs) * ln_atx, -np.inf)
    mix = np.logaddexp(a3, a4)
    s3 = np.exp(a3 - mix)
    s4 = np.exp(a4 - mix)
    gammas = x.map(
        lambda v: special.gammaln(r + v) + special.gammaln(b + v) - special.gammaln(a + b + v)
    )
    constant = -special.gammaln(r) + r * np.log(alpha) + special.gammaln(a + b) - special.gammaln(b)
    ll = gammas + constant + mix
    dig_r = x.map(lambda v: special.digamma(r + v)) - special.digamma(r)
    d_r = dig_r + np.log(alpha) - s3 * ln_at - s4 * ln_atx
    inv_at = T.map(lambda v: 1 / (alpha + v))
    inv_atx = t_x.map(lambda v: 1 / (alpha + v))
    d_alpha = r / alpha - (r + xs) * (s3 * inv_at + s4 * inv_atx)
    dig_abx = x.map(lambda v: special.digamma(a + b + v))
    dig_ab = special.digamma(a + b)
    d_a = dig_ab - dig_abx + s4 / a
    dig_bx = x.map(lambda v: special.digamma(b + v)) - special.digamma(b)
    d_b = dig_ab + dig_bx - dig_abx - s4 / bx1
    return ll, d_r * r, d_alpha * alpha, d_a * a, d_b * b


def bg_nbd_log_likelihood(params: dict[str, float], x: Array, t_x: Array, T: Array) -> Array:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
    log_params = np.log([params["r"], params["alpha"], params["a"], params["b"]])
    return _bg_nbd_terms(log_params, *_columns(x, t_x, T))[0]


def fit_bg_nbd(x: Array, t_x: Array, T: Array) -> FitResult:
    """Maximum-likelihood r, α, a, b from repeat purchases x, recency t_x and age T (one time unit).

    Times are divided by their mean age before the fit (α scales with time; r, a, b do not),
    so the optimiser starts from all-ones in every unit.
    """
    names = ("r", "alpha", "a", "b")
    n = len(x)
    if n == 0:
        return not_fitted(BG_NBD, names, 0, "no customer with a purchase")
    started = time.perf_counter()
    rows = _Triples.of(x, t_x, T)
    scale = float(np.average(rows.T, weights=rows.weight)) or 1.0
    data = _columns(rows.x, rows.t_x / scale, rows.T / scale)
    total = rows.weight.sum()

    def objective(log_params: Array) -> tuple[float, Array]:
        ll, *grads = _bg_nbd_terms(log_params, *data)
        w = rows.weight
        return -float(w @ ll) / total, -np.array([w @ g for g in grads]) / total

    result = maximise(objective, np.zeros(4))
    log_r, log_alpha, log_a, log_b = result.x
    params = dict(zip(names, np.exp([log_r, log_alpha + np.log(scale), log_a, log_b]), strict=True))
    log_likelihood = float(rows.weight @ bg_nbd_log_likelihood(params, rows.x, rows.t_x, rows.T))
    return replace(
        _result(BG_NBD, params, n, log_likelihood, result, objective),
        seconds=time.perf_counter() - started,
    )


def p_alive(params: dict[str, float], x: Array, t_x: Array, T: Array) -> Array:
    """P(still active at T | x, t_x, T) = 1 / (1 + δ(x>0)·a/(b+x−1)·((α+T)/(α+t_x))^(r+x)).

    In log space, so a large x or T cannot overflow the power.
    """
    from scipy import special

    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    x, t_x, T = (np.asarray(v, np.float64) for v in (x, t_x, T))
    buys = x > 0
    log_odds = np.where(
        buys,
        np.log(a)
        - np.log(np.where(buys, b + x - 1, 1.0))
        + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)),
        -np.inf,
    )
    return np.asarray(special.expit(-log_odds), np.float64)


def expected_purchases(
    params: dict[str, float], horizon: float, x: Array, t_x: Array, T: Array
) -> Array:
    """E[purchases in (T, T + horizon] | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10).

    The textbook form ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x−1; z), z = t/(α+T+t),
    multiplies a vanishing power by an exploding series when x or T is large. Euler's
    transformation 2F1(A,B;C;z) = (1−z)^(C−A−B)·2F1(C−A, C−B; C; z) turns the product into
    (1−z)^(a−1) · 2F1(a+b−1−r, a−1; a+b+x−1; z): small upper parameters, a large lower one,
    a series that converges fast and stays near 1.
    """
    if abs(params["a"] - 1.0) < A_NEAR_ONE:
        below = {**params, "a": 1.0 - A_NEAR_ONE}
        above = {**params, "a": 1.0 + A_NEAR_ONE}
        return (
            _expected_purchases(below, horizon, x, t_x, T)
            + _expected_purchases(above, horizon, x, t_x, T)
        ) / 2
    return _expected_purchases(params, horizon, x, t_x, T)


def _expected_purchases(
    params: dict[str, float], horizon: float, x: Array, t_x: Array, T: Array
) -> Array:
    from scipy import special

    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    x, t_x, T = (np.asarray(v, np.float64) for v in (x, t_x, T))
    z = np.broadcast_to(horizon / (alpha + T + horizon), x.shape)
    lower = a + b + x - 1
    at_pole = np.abs(lower) < LOWER_NEAR_ZERO
    lower = np.where(at_pole, 1.0, lower)  # those rows are replaced below
    series = np.asarray(special.hyp2f1(a + b - 1 - r, a - 1, lower, z), np.float64)
    failed = ~np.isfinite(series)
    if failed.any():
        # scipy's hyp2f1 returns inf when r − a is an exact integer (its z → 1 − z branch
        # for an integer c − a − b); E[Y(t)] is continuous in r, so take it at r·(1 + 1e-10).
        nudged = a + b - 1 - r * (1 + R_NUDGE)
        series[failed] = special.hyp2f1(nudged, a - 1, lower[failed], z[failed])
    decay = np.exp((a - 1) * np.log1p(-z))
    expected = lower / (a - 1) * (1.0 - decay * series)
    if at_pole.any():
        # c · 2F1(A, B; c; z) → A·B·z·2F1(A+1, B+1; 2; z) as c → 0, with A = a + b − 1 − r
        # and B = a − 1, whose factor 1/(a − 1) cancels B.
        upper, pole_z = a + b - 1 - r, z[at_pole]
        limit = special.hyp2f1(upper + 1, a, 2, pole_z)
        expected[at_pole] = -upper * pole_z * decay[at_pole] * limit
    expected = expected * p_alive(params, x, t_x, T)
    return np.asarray(np.maximum(expected, 0.0), np.float64)


def bg_nbd_scores(
    params: dict[str, float], horizon: float, x: Array, t_x: Array, T: Array
) -> tuple[Array, Array]:
    """(p_alive, expected purchases in (T, T + horizon]) per customer, each distinct
    (x, t_x, T) computed once."""
    rows = _Triples.of(x, t_x, T)
    alive = p_alive(params, rows.x, rows.t_x, rows.T)
    expected = expected_purchases(params, horizon, rows.x, rows.t_x, rows.T)
    return alive[rows.inverse], expected[rows.inverse]


# ---------------------------------------------------------------------------------------------
# Gamma-Gamma


def gamma_gamma_log_likelihood(params: dict[str, float], x: Array, mean_spend: Array) -> Array:
    """Per-customer Gamma-Gamma log-likelihood of the mean spend over x > 0 transactions."""
    log_params = np.log([params["p"], params["q"], params["gamma"]])
    return _gamma_gamma_terms(log_params, _Spend.of(x, mean_spend))[0]


@dataclass(frozen=True)
class _Spend:
    """Repeat buyers' x (by distinct value) and mean spend m, with the logs that do not
    depend on the parameters."""

    x: _Column
    m: Array
    ln_m: Array
    ln_x: Array

    @classmethod
    def of(cls, x: Array, m: Array) -> _Spend:
        m = np.asarray(m, np.float64)
        column = _Column.of(x)
        return cls(column, m, np.log(m), column.map(np.log))


def _gamma_gamma_terms(log_params: Array, data: _Spend) -> tuple[Array, Array, Array, Array]:
    from scipy import special

    p, q, g = np.exp(log_params)
    x, m, ln_m, ln_x = data.x.values, data.m, data.ln_m, data.ln_x
    px = p * x
    ln_gxm = np.log(g + x * m)
    gammas = data.x.map(lambda v: special.gammaln(p * v + q) - special.gammaln(p * v))
    ll = gammas - special.gammaln(q) + q * np.log(g) + (px - 1) * ln_m + px * ln_x
    ll -= (px + q) * ln_gxm
    dig = data.x.map(lambda v: special.digamma(p * v + q))
    dig_px = data.x.map(lambda v: special.digamma(p * v))
    d_p = x * (dig - dig_px + ln_m + ln_x - ln_gxm)
    d_q = dig - special.digamma(q) + np.log(g) - ln_gxm
    d_g = q / g - (px + q) / (g + x * m)
    return ll, d_p * p, d_q * q, d_g * g


def fit_gamma_gamma(x: Array, mean_spend: Array) -> FitResult:
    """Maximum-likelihood p, q, γ from customers with x > 0 repeat purchases and their mean spend.

    Spend is divided by its mean before the fit (γ scales with money; p, q do not).
    """
    names = ("p", "q", "gamma")
    x = np.asarray(x, np.float64)
    m = np.asarray(mean_spend, np.float64)
    started = time.perf_counter()
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    n = len(x)
    if n == 0:
        return not_fitted(GAMMA_GAMMA, names, 0, "no customer with a repeat purchase")
    order = np.lexsort((m, x))  # one order whatever the input order: the same bits every time
    x, m = x[order], m[order]
    scale = float(m.mean())
    m_s = m / scale

    data = _Spend.of(x, m_s)

    def objective(log_params: Array) -> tuple[float, Array]:
        ll, *grads = _gamma_gamma_terms(log_params, data)
        return -float(ll.sum()) / n, -np.array([g.sum() for g in grads]) / n

    result = maximise(objective, np.zeros(3))
    log_p, log_q, log_g = result.x
    params = dict(zip(names, np.exp([log_p, log_q, log_g + np.log(scale)]), strict=True))
    log_likelihood = float(gamma_gamma_log_likelihood(params, x, m).sum())
    return replace(
        _result(GAMMA_GAMMA, params, n, log_likelihood, result, objective),
        seconds=time.perf_counter() - started,
    )


def expected_spend(params: dict[str, float], x: Array, mean_spend: Array) -> Array:
    """E[spend per purchase | x, mean] = p(γ + x·m̄) / (px + q − 1); for x = 0 the population
    mean pγ / (q − 1). NaN where that mean does not exist (q ≤ 1)."""
    p, q, g = params["p"], params["q"], params["gamma"]
    x = np.asarray(x, np.float64)
    m = np.where(x > 0, np.nan_to_num(np.asarray(mean_spend, np.float64)), 0.0)
    denominator = p * x + q - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        spend = np.where(denominator > 0, p * (g + x * m) / denominator, np.nan)
    return np.asarray(spend, np.float64)


def _result(
    model: str,
    params: dict[str, float],
    n: int,
    log_likelihood: float,
    result: optimize.OptimizeResult,
    objective: Objective,
) -> FitResult:
    converged, message = verdict(params, log_likelihood, result, objective)
    return FitResult(
        model,
        {k: float(v) for k, v in params.items()},
        n,
        log_likelihood,
        converged,
        message,
        int(result.nit),
    )
