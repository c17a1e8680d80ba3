"""Where servio's ingest spends its time: the ingest half of the run sequence under cProfile,
summarised as text (the hottest functions by cumulative and by own time, and the time per
step). Uses the raw exports `benchmarks/run.py` generated for a scale.

    .venv/bin/python -m benchmarks.profile_ingest --scale 1M [--out FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run import DEFAULT_WORKDIR, Paths, _context, uptime_load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="1M")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from servio.steps import sequence

    paths = Paths(args.workdir, args.scale)
    curated = paths.base / "curated-profile"
    shutil.rmtree(curated, ignore_errors=True)
    ctx = _context(paths.settings(curated), "bench-profile")
    timed = sequence.Timed()
    plan = sequence.Plan(snapshot=None, data_docs=False)
    load = uptime_load()
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    sequence.run(ctx, plan, timed)
    profile.disable()
    wall = time.perf_counter() - started
    text = io.StringIO()
    text.write(f"ingest of {paths.raw} under cProfile: {wall:.1f} s wall, load before {load}, ")
    text.write(f"after {uptime_load()}\n\nper step (s): ")
    text.write(", ".join(f"{k} {v:.1f}" for k, v in timed.seconds.items()) + "\n")
    for order in ("cumulative", "tottime"):
        text.write(f"\n## top 40 by {order}\n")
        stats = pstats.Stats(profile, stream=text)
        stats.strip_dirs().sort_stats(order).print_stats(40)
    shutil.rmtree(curated, ignore_errors=True)
    if args.out:
        args.out.write_text(text.getvalue())
    print(text.getvalue())


if __name__ == "__main__":
    main()
