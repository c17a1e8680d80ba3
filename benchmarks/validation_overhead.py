"""How much row validation adds to ingesting one large interactions file (issue 3: at most 30 %).

Builds a synthetic standardised interactions frame (default 10 million rows, ~1 % of them bad,
spread over every rule), writes it as CSV, and times

- the baseline ingest without validation: Polars `read_csv` + standardise (parse and cast) +
  `write_parquet` (zstd);
- `validate_rows` on the standardised frame, with its phases (derived columns, conversion to
  pandas, GX validation with row-id collection, failure details);
- for reference: one whole-frame `to_pandas`, and a GX pass without row ids ("BOOLEAN_ONLY").

Run:  .venv/bin/python -m benchmarks.validation_overhead [--rows 10000000] [--workdir DIR]
      [--repeat 2] [--out benchmarks/results/<date>-validation-overhead-<rows>.md]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np
import polars as pl

from servio.schemas.raw import INTERACTIONS_RAW
from servio.schemas.suites import PARAM_LATEST_ALLOWED_AT, PARAM_REPORTING_CURRENCIES, load_suite
from servio.schemas.table import MONEY, TIMESTAMP
from servio.validation import gx as validation

INGESTED_AT = datetime(2026, 11, 27, 12, tzinfo=UTC)
BAD_SHARE = 0.01
# One entry per injected defect; bad rows are dealt round-robin over them.
DEFECTS = (
    "required:customer_id",
    "length:interaction_id",
    "allowed:channel",
    "too_old:started_at",
    "future:started_at",
    "range:handle_seconds",
    "range:handle_seconds(NaN)",
    "range:queue_seconds",
    "required:resolved",
    "range:revenue",
    "currency:currency",
    "future:updated_at",
    "conflicting_duplicate:interaction_id",
)


def synthetic_frame(rows: int, seed: int = 7) -> tuple[pl.DataFrame, dict[str, int]]:
    """A standardised interactions frame and how many rows carry each defect."""
    rng = np.random.default_rng(seed)
    start = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    year_us = 365 * 86_400 * 1_000_000
    id_number = np.arange(1, rows + 1)
    started_us = start + rng.integers(0, year_us, rows)
    defect = np.full(rows, -1)
    bad = rng.choice(rows, int(rows * BAD_SHARE), replace=False)
    defect[bad] = np.arange(bad.size) % len(DEFECTS)
    duplicate = DEFECTS.index("conflicting_duplicate:interaction_id")
    # A conflicting duplicate repeats the key and start time of the row before it.
    pairs = np.flatnonzero(defect == duplicate)
    pairs = pairs[pairs > 0]
    chained = np.isin(pairs - 1, pairs)  # keep pairs disjoint: a row is copied, or copied from
    defect[pairs[chained]] = -1
    pairs = pairs[~chained]
    id_number[pairs] = id_number[pairs - 1]
    started_us[pairs] = started_us[pairs - 1]
    defect[pairs - 1] = duplicate

    def has(name: str) -> pl.Expr:
        return pl.col("_defect") == DEFECTS.index(name)

    frame = pl.DataFrame(
        {
            "source_row": np.arange(1, rows + 1, dtype=np.int64),
            "_id": id_number,
            "_defect": defect,
            "started_at": pl.Series(started_us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "handle_seconds": rng.uniform(10, 3_000, rows).round(1),
            "queue_seconds": rng.uniform(0, 600, rows).round(1),
            "revenue": rng.uniform(-50, 500, rows).round(2),
            "_customer": rng.integers(1, 500_000, rows),
            "_channel": rng.integers(0, 5, rows),
        }
    ).with_columns(
        interaction_id=pl.when(has("length:interaction_id"))
        .then(pl.lit("X" * 70))
        .otherwise(pl.format("I{}", pl.col("_id"))),
        customer_id=pl.when(has("required:customer_id"))
        .then(None)
        .otherwise(pl.format("C{}", pl.col("_customer"))),
        channel=pl.when(has("allowed:channel"))
        .then(pl.lit("fax"))
        .otherwise(
            pl.col("_channel").replace_strict(
                list(range(5)), ["phone", "chat", "email", "visit", "web"], return_dtype=pl.String
            )
        ),
        started_at=pl.when(has("too_old:started_at"))
        .then(pl.lit(datetime(1999, 6, 1, tzinfo=UTC)))
        .when(has("future:started_at"))
        .then(pl.lit(datetime(2031, 1, 1, tzinfo=UTC)))
        .otherwise(pl.col("started_at")),
        handle_seconds=pl.when(has("range:handle_seconds"))
        .then(-5.0)
        .when(has("range:handle_seconds(NaN)"))
        .then(float("nan"))
        .otherwise(pl.col("handle_seconds")),
        queue_seconds=pl.when(has("range:queue_seconds"))
        .then(700_000.0)
        .when(pl.col("_customer") % 3 == 0)
        .then(None)
        .otherwise(pl.col("queue_seconds")),
        resolved=pl.when(has("required:resolved")).then(None).otherwise(pl.col("_id") % 3 > 0),
        reason=pl.lit("billing"),
        revenue=pl.when(has("range:revenue"))
        .then(2e9)
        .when(pl.col("_customer") % 4 == 0)
        .then(None)
        .otherwise(pl.col("revenue"))
        .cast(MONEY),
        margin=pl.lit(None, dtype=MONEY),
        currency=pl.when(has("currency:currency"))
        .then(pl.lit("USD"))
        .when(pl.col("_customer") % 2 == 0)
        .then(None)
        .otherwise(pl.lit("EUR")),
        agent_id=pl.format("A{}", pl.col("_customer") % 300),
        updated_at=pl.when(has("future:updated_at"))
        .then(pl.lit(datetime(2031, 1, 1, tzinfo=UTC)))
        .otherwise(pl.lit(None, dtype=TIMESTAMP)),
    )
    injected = (
        frame.filter(pl.col("_defect") >= 0)
        .group_by("_defect")
        .len()
        .with_columns(pl.col("_defect").map_elements(lambda i: DEFECTS[i], return_dtype=pl.String))
    )
    counts = dict(zip(injected["_defect"], injected["len"], strict=True))
    return frame.select("source_row", *INTERACTIONS_RAW.names).rechunk(), counts


def standardise(raw: pl.DataFrame) -> pl.DataFrame:
    """Stand-in for the lead's standardisation: parse text columns into the contract types."""
    return raw.with_columns(
        pl.col("source_row").cast(pl.Int64),
        pl.col("started_at", "updated_at").str.to_datetime(time_zone="UTC", strict=False),
        pl.col("handle_seconds", "queue_seconds").cast(pl.Float64, strict=False),
        pl.col("resolved")
        .str.to_lowercase()
        .replace_strict({"true": True, "false": False}, default=None, return_dtype=pl.Boolean),
        pl.col("revenue", "margin").cast(MONEY, strict=False),
        pl.col("channel", "reason").str.strip_chars().str.to_lowercase(),
        pl.col("currency").str.strip_chars().str.to_uppercase(),
    )


class Steps:
    """Wall-clock and process CPU seconds of named steps, per round of a repeated benchmark."""

    def __init__(self) -> None:
        self.rounds: list[dict[str, tuple[float, float]]] = []

    def next_round(self) -> None:
        self.rounds.append({})

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        if not self.rounds:
            self.next_round()
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.rounds[-1][label] = (time.perf_counter() - wall, time.process_time() - cpu)

    def best(self, label: str) -> float:
        return min(r[label][0] for r in self.rounds)

    def labels(self) -> list[str]:
        return list(self.rounds[0])

    def wall(self, round_number: int) -> float:
        return sum(wall for wall, _ in self.rounds[round_number].values())

    def cpu(self, round_number: int) -> float:
        return sum(cpu for _, cpu in self.rounds[round_number].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per step; the fastest counts")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the CSV goes (default: a temp dir)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the output there, as Markdown"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="servio-bench-", dir=args.workdir))
    output = _Tee(sys.stdout)
    load_before = os.getloadavg()
    try:
        with contextlib.redirect_stdout(output):
            run(args.rows, workdir, args.repeat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.out:
        from benchmarks.run import code_version

        command = " ".join(["python -m benchmarks.validation_overhead", *sys.argv[1:]])
        loads = f"load average before {_load(load_before)}, after {_load(os.getloadavg())}"
        args.out.write_text(
            f"# GX validation overhead, {args.rows:,} rows\n\n"
            f"`{command}` at servio {code_version()}, on {platform.node() or 'this machine'} "
            f"({os.cpu_count()} CPUs), {loads}.\n\n```\n{output.text.getvalue()}```\n"
        )


class _Tee(io.TextIOBase):
    """Writes to the console and keeps a copy."""

    def __init__(self, console: TextIO) -> None:
        self.console = console
        self.text = io.StringIO()

    def write(self, text: str) -> int:
        self.console.write(text)
        return self.text.write(text)

    def flush(self) -> None:
        self.console.flush()


def _load(averages: tuple[float, float, float]) -> str:
    return "[" + ", ".join(f"{value:.2f}" for value in averages) + "]"


def run(rows: int, workdir: Path, repeat: int) -> None:
    print(f"building a standardised interactions frame of {rows:,} rows ...", flush=True)
    frame, injected = synthetic_frame(rows)
    csv_path = workdir / "interactions.csv"
    frame.write_csv(csv_path, datetime_format="%Y-%m-%dT%H:%M:%S%.fZ")
    print(f"CSV: {csv_path.stat().st_size / 1e9:.2f} GB; best of {repeat} run(s)", flush=True)

    reference = Steps()
    with reference.step("GX import, context, first small validation (once per process)"):
        validation.validate_rows(
            frame.head(10),
            INTERACTIONS_RAW,
            currency="EUR",
            ingested_at=INGESTED_AT,
            file_label="interactions/warm-up.csv",
        )

    # Rounds alternate baseline and validation, so both see the same machine load.
    baseline, validating = Steps(), Steps()
    for _ in range(repeat):
        baseline.next_round()
        validating.next_round()
        with baseline.step("read_csv (all text)"):
            raw = pl.read_csv(csv_path, infer_schema=False)
        with baseline.step("standardise (parse, cast)"):
            standardised = standardise(raw)
        with baseline.step("write_parquet (zstd)"):
            standardised.write_parquet(workdir / "interactions.parquet", compression="zstd")
        del raw, standardised
        with validating.step("validate_rows"):
            result = validation.validate_rows(
                frame,
                INTERACTIONS_RAW,
                currency="EUR",
                ingested_at=INGESTED_AT,
                file_label="interactions/bench.csv",
            )

    with reference.step("whole frame to_pandas(use_pyarrow_extension_array=True)"):
        frame.to_pandas(use_pyarrow_extension_array=True)
    suite = load_suite(INTERACTIONS_RAW)
    parameters = {
        PARAM_REPORTING_CURRENCIES: ["EUR"],
        PARAM_LATEST_ALLOWED_AT: datetime(2026, 11, 28, 12, tzinfo=UTC),
    }
    with reference.step("GX cheap pass alone (BOOLEAN_ONLY, no row ids)"):
        _, _, cheap = validation._run_suite(
            frame.lazy(), INTERACTIONS_RAW, suite, parameters, {"result_format": "BOOLEAN_ONLY"}
        )

    print()
    print(f"{'step (fastest round)':58s} {'seconds':>8s}")
    for label in baseline.labels():
        print(f"  {label:56s} {baseline.best(label):8.2f}")
    print()
    for phase, seconds in result.timings_s.items():
        print(f"  {'validate_rows (last round): ' + phase:56s} {seconds:8.2f}")
    print()
    print("for reference (not part of validate_rows):")
    for label in reference.labels():
        print(f"  {label:56s} {reference.best(label):8.2f}")
    print("    of which " + ", ".join(f"{k} {v:.2f}" for k, v in cheap.items()))
    print()
    print(
        f"{'round':>5s} {'baseline wall':>14s} {'validate wall':>14s} {'overhead':>9s}"
        f" {'baseline cpu':>13s} {'validate cpu':>13s}"
    )
    ratios = []
    for number in range(repeat):
        base_wall, check_wall = baseline.wall(number), validating.wall(number)
        ratios.append(check_wall / base_wall)
        print(
            f"{number + 1:5d} {base_wall:13.2f}s {check_wall:13.2f}s {100 * ratios[-1]:8.1f}%"
            f" {baseline.cpu(number):12.2f}s {validating.cpu(number):12.2f}s"
        )
    best_base = sum(baseline.best(label) for label in baseline.labels())
    best_check = validating.best("validate_rows")
    print(
        f"overhead: median round {100 * statistics.median(ratios):.1f} %; "
        f"fastest validate_rows / fastest baseline = {best_check:.2f} s / {best_base:.2f} s "
        f"= {100 * best_check / best_base:.1f} %"
    )
    print()
    found = result.failures.group_by("reason_code").len().sort("reason_code")
    print(f"failures: {result.failures.height:,} reasons on {result.failed_rows.len():,} rows")
    for code, count in found.iter_rows():
        print(f"  {code:40s} {count:9,d}")
    print("injected:", ", ".join(f"{k}={v:,}" for k, v in sorted(injected.items())))


if __name__ == "__main__":
    main()
