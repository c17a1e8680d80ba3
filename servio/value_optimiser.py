"""The optimiser the likelihoods of `servio.value_model` share: L-BFGS-B over the logarithms
of the parameters inside a search box, on one BLAS thread, and the verdict on its estimate
(converged, or why not: the optimiser's failure, a non-finite value, an estimate at the edge
of the box, a likelihood flat in some direction). numpy + scipy, no Polars, no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

# scipy is imported inside the functions that use it (see `servio.value_model`).
if TYPE_CHECKING:
    from scipy import optimize
    from threadpoolctl import ThreadpoolController

Array = NDArray[np.float64]

# Search box for log(parameter): e^±15 spans every sensible value in days or currency units.
# An estimate pressed against it means the likelihood has no interior maximum on these data.
LOG_BOUND = 15.0
EDGE = 1e-3  # distance to the box, in log units, that counts as "at the edge"
MAX_ITERATIONS = 500
# At an interior maximum the log-likelihood curves down in every direction. A flat direction
# (a parameter the data say nothing about, or a supremum approached at infinity) shows as a
# Hessian eigenvalue that is ≤ 0 or negligible next to the largest one.
MIN_CURVATURE_RATIO = 1e-6
HESSIAN_STEP = 1e-4  # central differences of the analytic gradient, in log-parameter units

Objective = Callable[[Array], tuple[float, Array]]  # log-parameters → (value, gradient)


def maximise(objective: Objective, start: Array) -> optimize.OptimizeResult:
    """The minimum of `objective` (a negative log-likelihood) in the search box."""
    from scipy import optimize

    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(start)
    with np.errstate(all="ignore"), _optimiser_blas().limit(limits=1):
        return optimize.minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": MAX_ITERATIONS, "ftol": 1e-13, "gtol": 1e-8},
        )


@functools.cache
def _optimiser_blas() -> ThreadpoolController:
    """The BLAS scipy's L-BFGS-B calls (scipy's own OpenBLAS, not numpy's), run on one thread
    during a fit. Its steps work on a few parameters; with its threads woken for each (two on
    this machine), a small snapshot's fits cost ~0.2 CPU-s instead of ~1 ms, and a 200k-row fit
    twice the CPU; the results are the same to the bit (the vectors numpy multiplies in the
    objective keep numpy's threads). No such library found (scipy sharing numpy's BLAS, as on
    conda): nothing is limited."""
    from scipy import optimize  # noqa: F401  (loads scipy's BLAS, so that it is found)
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    scipy_own = [
        lib.filepath
        for lib in controller.lib_controllers
        if lib.user_api == "blas" and "scipy" in Path(lib.filepath).parent.name
    ]
    return controller.select(filepath=scipy_own)


def verdict(
    params: dict[str, float],
    log_likelihood: float,
    result: optimize.OptimizeResult,
    objective: Objective,
) -> tuple[bool, str]:
    """(converged, "converged" or every reason it did not, joined by "; ")."""
    values = np.array(list(params.values()))
    at_edge = np.abs(np.abs(result.x) - LOG_BOUND) < EDGE
    problems = []
    if not result.success:
        problems.append(f"optimiser: {result.message}")
    if not (np.isfinite(values).all() and np.isfinite(log_likelihood)):
        problems.append("a parameter or the log-likelihood is not finite")
    if at_edge.any():
        edges = [name for name, edge in zip(params, at_edge, strict=True) if edge]
        problems.append(
            f"{', '.join(edges)} ran to the edge of the search box (no interior maximum)"
        )
    if not problems and not _curves_down(objective, result.x):
        problems.append(
            "the log-likelihood is flat in some direction at the estimate "
            "(a parameter is not determined by these data)"
        )
    return not problems, "; ".join(problems) or "converged"


def _curves_down(objective: Objective, at: Array) -> bool:
    """Is the Hessian of the (minimised) objective positive definite and well conditioned?"""
    with np.errstate(all="ignore"):
        columns = [
            (objective(at + HESSIAN_STEP * e)[1] - objective(at - HESSIAN_STEP * e)[1])
            / (2 * HESSIAN_STEP)
            for e in np.eye(len(at))
        ]
    hessian = np.array(columns)
    if not np.isfinite(hessian).all():
        return False
    eigenvalues = np.linalg.eigvalsh((hessian + hessian.T) / 2)
    return bool(eigenvalues[0] > MIN_CURVATURE_RATIO * eigenvalues[-1] > 0)
