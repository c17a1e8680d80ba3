"""Customer-value model fit + scoring time at scale (issue 22: ≤ 60 s at 1M customers).

Simulates a snapshot's purchase summary from the BG/NBD and Gamma-Gamma stories themselves
(purchase days in a 365-day window, continuous-time purchases counted once per UTC day,
known parameters), then times, in this process:

- `score_customers`: both maximum-likelihood fits and the scores of every buyer (p_alive,
  expected purchases in (D, D + h], expected spend) — the step the goal is about;
- `customer_value`: the Polars assembly of the table from the summary and the scores.

and reports the recovered parameters next to the true ones (a sanity check, not a test).

Run:  .venv/bin/python -m benchmarks.value_fit [--customers 1000000] [--repeat 3]
Writes benchmarks/results/<date>-value-fit-<n>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.run import code_version
from servio.transforms.value import customer_value
from servio.value_snapshot import score_customers

RESULTS = Path(__file__).parent / "results"
WINDOW_DAYS = 365
HORIZON_DAYS = 365
AS_OF = date(2026, 11, 27)
TRUTH_BG_NBD = {"r": 0.9, "alpha": 45.0, "a": 0.8, "b": 3.5}
TRUTH_GAMMA_GAMMA = {"p": 4.0, "q": 3.5, "gamma": 60.0}


def simulate(customers: int, seed: int = 22) -> pl.DataFrame:
    """A purchase summary as `transforms.value.purchase_summary` returns it, for buyers only
    (every simulated customer made a first purchase in the window)."""
    rng = np.random.default_rng(seed)
    t = TRUTH_BG_NBD
    rate = rng.gamma(t["r"], 1 / t["alpha"], customers)
    drop = rng.beta(t["a"], t["b"], customers)
    first = rng.integers(0, WINDOW_DAYS, customers)  # days ago of the first purchase
    T = first.astype(np.int64)
    x = np.zeros(customers, np.int64)
    last_day = np.zeros(customers, np.int64)  # days since the first purchase day
    clock = np.zeros(customers)
    alive = np.ones(customers, bool)  # BG/NBD: dropout only follows a repeat purchase
    while alive.any():
        idx = np.flatnonzero(alive)
        clock[idx] += rng.exponential(1 / np.maximum(rate[idx], 1e-12))
        day = np.floor(clock[idx]).astype(np.int64)
        inside = day <= T[idx]
        new_day = inside & (day > last_day[idx])
        x[idx[new_day]] += 1
        last_day[idx[new_day]] = day[new_day]
        stays = inside & (rng.random(idx.size) >= drop[idx])
        alive[idx[~stays]] = False
    g = TRUTH_GAMMA_GAMMA
    scale = rng.gamma(g["q"], 1 / g["gamma"], customers)  # ν: spend rate per customer
    repeat_total = np.where(x > 0, rng.gamma(g["p"] * np.maximum(x, 1), 1 / scale), 0.0)
    cents = np.round(repeat_total * 100).astype(np.int64)
    first_cents = np.round(rng.gamma(g["p"], 1 / scale) * 100).astype(np.int64) + 1
    return pl.DataFrame(
        {
            "customer_id": [f"C{n:08d}" for n in range(customers)],
            "x": x,
            "t_x": last_day,
            "T": T,
            "repeat_revenue": pl.Series(cents).cast(pl.Decimal(18, 0)) / 100,
            "margin": pl.Series((cents + first_cents) * 2 // 5).cast(pl.Decimal(18, 0)) / 100,
        }
    ).with_columns(
        avg_repeat_spend=pl.when(pl.col("x") > 0).then(
            (pl.col("repeat_revenue").cast(pl.Decimal(38, 20)) / pl.col("x")).round(2)
        ),
        repeat_revenue=pl.col("repeat_revenue").cast(pl.Decimal(18, 2)),
        margin=pl.col("margin").cast(pl.Decimal(18, 2)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    summary = simulate(args.customers)
    simulate_s = time.perf_counter() - started
    distinct = summary.select("x", "t_x", "T").unique().height

    score_s, assemble_s = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        scores, fits = score_customers(summary, HORIZON_DAYS)
        score_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        table = customer_value(
            summary.lazy(),
            scores.lazy(),
            AS_OF,
            horizon_days=HORIZON_DAYS,
            gross_margin_rate=0.4,
            annual_discount_rate=0.1,
        ).collect()
        assemble_s.append(time.perf_counter() - started)
    assert table.height == args.customers

    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "what": "score_customers (BG/NBD + Gamma-Gamma fits and scoring) and customer_value",
        "command": f".venv/bin/python -m benchmarks.value_fit --customers {args.customers} "
        f"--repeat {args.repeat}",
        "commit": code_version(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": list(os.getloadavg()),
        "customers": args.customers,
        "distinct_x_t_x_T": distinct,
        "repeat_buyers": int((summary["x"] > 0).sum()),
        "simulate_s": round(simulate_s, 2),
        "score_customers_s": [round(s, 2) for s in score_s],
        "score_customers_median_s": round(statistics.median(score_s), 2),
        "customer_value_assembly_s": [round(s, 2) for s in assemble_s],
        "fits": [
            {
                "model": f.model,
                "converged": f.converged,
                "seconds": round(f.seconds, 2),
                "iterations": f.iterations,
                "n_customers": f.n_customers,
                "params": {k: round(v, 4) for k, v in f.params.items()},
            }
            for f in fits
        ],
        "truth": {"bg_nbd": TRUTH_BG_NBD, "gamma_gamma": TRUTH_GAMMA_GAMMA},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "goal_s": 60,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{result['date']}-value-fit-{_scale(args.customers)}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


def _scale(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def _markdown(r: dict) -> str:  # type: ignore[type-arg]
    lines = [
        f"# Customer-value fit + scoring, {r['customers']:,} customers ({r['date']})",
        "",
        f"Command: `{r['command']}` on commit `{r['commit']}`; {r['machine']}; "
        f"load average before {r['load_average']}; peak RSS {r['peak_rss_mib']} MiB.",
        f"{r['distinct_x_t_x_T']:,} distinct (x, t_x, T); {r['repeat_buyers']:,} repeat buyers.",
        "",
        "| step | wall s (each run) | goal |",
        "|---|---|---|",
        f"| score_customers: both fits + scoring | {r['score_customers_s']} "
        f"(median {r['score_customers_median_s']}) | ≤ {r['goal_s']} |",
        f"| customer_value assembly (Polars) | {r['customer_value_assembly_s']} | |",
        "",
        "| model | converged | fit s | iterations | estimates | truth |",
        "|---|---|---|---|---|---|",
    ]
    for f in r["fits"]:
        lines.append(
            f"| {f['model']} | {f['converged']} | {f['seconds']} | {f['iterations']} | "
            f"{f['params']} | {r['truth'][f['model']]} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
