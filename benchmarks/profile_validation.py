"""Where Great Expectations spends its time in `validate_rows`: the synthetic interactions
frame of `benchmarks.validation_overhead` validated once under cProfile (after a warm-up), and
once with 1,000 rows (GX's fixed cost per call), summarised as text.

    .venv/bin/python -m benchmarks.profile_validation [--rows 1000000] [--out FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

from benchmarks.validation_overhead import INGESTED_AT, synthetic_frame
from servio.schemas.raw import INTERACTIONS_RAW
from servio.validation import gx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    frame, _ = synthetic_frame(args.rows)
    text = io.StringIO()

    def validate(rows: int) -> dict[str, float]:
        result = gx.validate_rows(
            frame.head(rows),
            INTERACTIONS_RAW,
            currency="EUR",
            ingested_at=INGESTED_AT,
            file_label="interactions/profile.csv",
        )
        return result.timings_s

    validate(10)  # GX import and context
    for rows in (1_000, args.rows):
        started = time.perf_counter()
        timings = validate(rows)
        text.write(
            f"validate_rows, {rows:,} rows, no profiler: {time.perf_counter() - started:.3f} s "
        )
        text.write("(" + ", ".join(f"{k} {v:.3f}" for k, v in timings.items()) + ")\n")
    profile = cProfile.Profile()
    profile.enable()
    validate(args.rows)
    profile.disable()
    for order in ("cumulative", "tottime"):
        text.write(f"\n## {args.rows:,} rows under cProfile, top 45 by {order}\n")
        pstats.Stats(profile, stream=text).strip_dirs().sort_stats(order).print_stats(45)
    if args.out:
        args.out.write_text(text.getvalue())
    print(text.getvalue())


if __name__ == "__main__":
    main()
