"""Where servio's ingest spends its time: the ingest half of the run sequence under cProfile,
summarised as text (the hottest functions by cumulative and by own time, and the time per
step). Uses the raw exports `benchmarks/run.py` generated for a scale.

    .venv/bin/python -m benchmarks.profile_ingest --scale 1M [--workdir DIR] [--out FILE]

cProfile sees the main thread only, and publishing writes its partition files on a thread
pool: the I/O functions named in `TIMED` are therefore also timed on every thread (calls and
seconds summed over threads, so they may exceed the wall time of the step running them).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import io
import pstats
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run import DEFAULT_WORKDIR, Paths, _context, uptime_load  # noqa: E402

# (module[:class], attribute): the function as its callers look it up (a module global or a class
# attribute), wrapped for the run.
TIMED = (
    ("servio.raw.landing", "_sha256_stream"),
    ("servio.steps.read", "write_stage"),
    ("servio.steps.check", "write_stage"),
    ("servio.steps.merge", "write_partition_file"),
    ("servio.lake.publication", "write_partition_file"),
    ("servio.lake.files", "_write_parquet"),
    ("servio.objectstore", "fsync"),
    ("servio.lake.delta", "describe_file"),
    ("servio.lake.delta", "commit"),
    ("servio.objectstore:Store", "put_file"),
    ("servio.objectstore:Store", "place"),
)


class Totals:
    """Calls and seconds per wrapped function, summed over threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                with self.lock:
                    self.calls[name] = self.calls.get(name, 0) + 1
                    self.seconds[name] = self.seconds.get(name, 0.0) + spent

        return timed

    def install(self) -> None:
        for where, attribute in TIMED:
            module_name, _, class_name = where.partition(":")
            owner: Any = importlib.import_module(module_name)
            if class_name:
                owner = getattr(owner, class_name)
            setattr(owner, attribute, self.wrap(f"{where}.{attribute}", getattr(owner, attribute)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="1M")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--stats", type=Path, default=None, help="also dump the pstats here")
    args = parser.parse_args()
    from servio.steps import sequence

    paths = Paths(args.workdir, args.scale)
    curated = paths.base / "curated-profile"
    shutil.rmtree(curated, ignore_errors=True)
    ctx = _context(paths.settings(curated), "bench-profile")
    timed = sequence.Timed()
    totals = Totals()
    totals.install()
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
    text.write("\n## I/O functions, on every thread (calls, seconds summed over threads)\n")
    for name, seconds in sorted(totals.seconds.items(), key=lambda item: -item[1]):
        text.write(f"  {seconds:8.2f} s  {totals.calls[name]:6d}  {name}\n")
    for order in ("cumulative", "tottime"):
        text.write(f"\n## top 40 by {order} (main thread)\n")
        stats = pstats.Stats(profile, stream=text)
        stats.strip_dirs().sort_stats(order).print_stats(40)
    shutil.rmtree(curated, ignore_errors=True)
    if args.stats:
        profile.dump_stats(args.stats)
    if args.out:
        args.out.write_text(text.getvalue())
    print(text.getvalue())


if __name__ == "__main__":
    main()
