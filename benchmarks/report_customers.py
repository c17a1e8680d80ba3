"""How long the report's customer list takes at scale, on synthetic frames (no lake).

    .venv/bin/python benchmarks/report_customers.py --customers 1000000 [--contacts 6]

Builds a snapshot's segments, profitability and quality for N customers and their contacts
in the window (random actions, profits, gaps and channels; seeded), then times the steps
the report and `servio export` run after reading the lake: `main_channels` over the
contacts, `customer_list` (joins, worst dimension, order), `top_lists` (the report's cuts).
Prints wall seconds per step and the process's peak RSS. Reading the lake is not included.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import date

import numpy as np
import polars as pl

from servio.report.customers import customer_list, main_channels, top_lists

ACTIONS = ("retain_now", "grow", "ask_feedback", "reduce_cost_to_serve", "review_terms")
CHANNELS = ("phone", "chat", "email", "visit", "web")
DIMENSIONS = ("tangibles", "reliability", "responsiveness", "assurance", "empathy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=6, help="contacts per customer")
    args = parser.parse_args()
    n, rng = args.customers, np.random.default_rng(1)
    ids = pl.Series("customer_id", [f"C{i:08d}" for i in range(n)])
    segments = pl.DataFrame(
        {
            "as_of_date": [date(2026, 11, 26)] * n,
            "customer_id": ids,
            "action": np.array(ACTIONS)[rng.integers(0, len(ACTIONS), n)],
            "profit_segment": "core",
            "service_level": "below",
            "rfm_segment": "loyal",
        }
    )
    money = pl.Decimal(18, 2)
    profitability = pl.DataFrame(
        {
            "customer_id": ids,
            "profit_rank": pl.Series(rng.permutation(n) + 1, dtype=pl.Int64),
            "profit": rng.normal(100, 50, n),
            "revenue": 1.0,
            "cost_to_serve": 1.0,
        }
    ).with_columns(pl.col("profit", "revenue", "cost_to_serve").cast(money))
    quality = pl.DataFrame(
        {
            "customer_id": ids,
            "service_gap": rng.normal(0, 1, n),
            "n_interactions": args.contacts,
            "n_responses": 1,
            **{f"{d}_gap": rng.normal(0, 1, n).round(1) for d in DIMENSIONS},
        }
    )
    contacts = pl.LazyFrame(
        {
            "customer_id": pl.concat([ids] * args.contacts),
            "channel": np.array(CHANNELS)[rng.integers(0, len(CHANNELS), args.contacts * n)],
        }
    )
    started = time.perf_counter()
    channels = main_channels(contacts).collect()
    listed = time.perf_counter()
    customers = customer_list(
        segments=segments,
        profitability=profitability,
        quality=quality,
        channels=channels,
        value=None,
        dimensions=DIMENSIONS,
    )
    cut = time.perf_counter()
    top_lists(customers)
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{n:,} customers, {args.contacts * n:,} contacts: main_channels {listed - started:.2f} s, "
        f"customer_list {cut - listed:.2f} s, top_lists {done - cut:.2f} s; "
        f"peak RSS {peak:,.0f} MiB (frames included)"
    )


if __name__ == "__main__":
    main()
