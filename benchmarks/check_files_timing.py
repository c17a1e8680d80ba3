"""How long `check_files` takes on the raw exports `benchmarks/run.py` generated for a scale,
with Great Expectations imported first (its import is timed apart: in a run it falls in the
first `check_files`), and where its time goes: the steps of `servio.steps.check` are timed by
wrapping them in this process, and the validator's own phases come from its results.

    .venv/bin/python -m benchmarks.check_files_timing [--scale 1M]

Stages nothing for good: staging goes to a temporary lake, removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.profile_ingest import Totals  # noqa: E402
from benchmarks.run import DEFAULT_WORKDIR, Paths, _context, uptime_load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1M")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    from servio.steps import check
    from servio.steps.discover import discover
    from servio.steps.read import read_file
    from servio.validation import gx

    totals = Totals()  # seconds per wrapped step

    validate_files = gx.validate_files

    def reporting(*a: Any, **k: Any) -> Any:
        found, results = validate_files(*a, **k)
        phases = ", ".join(f"{k} {v:.2f}" for k, v in results[0].timings_s.items())
        print(f"  validator: {len(results)} files of {results[0].source}: {phases}")
        return found, results

    gx.validate_files = reporting  # type: ignore[assignment]
    for name in ("_file_conflicts", "_validate", "_finish", "_finish_chunk", "write_stage"):
        setattr(check, name, totals.wrap(name, getattr(check, name)))
    gx.GxValidator.keep = totals.wrap("keep (GX results to JSON)", gx.GxValidator.keep)  # type: ignore[method-assign]

    paths = Paths(args.workdir, args.scale)
    curated = Path(tempfile.mkdtemp(prefix="servio-check-"))
    try:
        ctx = _context(paths.settings(curated), "bench-check-files")
        print(f"load average before {uptime_load()}")
        started = time.perf_counter()
        gx.load()
        print(f"GX import and context: {time.perf_counter() - started:.2f} s")
        discovered = discover(ctx, None)
        ctx.lake.claim_staging(ctx.run_id)
        started = time.perf_counter()
        read = [read_file(ctx, landed) for landed in discovered.todo]
        print(f"read_file, {len(read)} files: {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        for group in check.by_source(read):
            check.check_files(ctx, [read[i] for i in group])
        print(f"check_files: {time.perf_counter() - started:.2f} s")
        for name, value in totals.seconds.items():
            print(f"  {name}: {value:.2f} s")
        print(f"load average after {uptime_load()}")
        ctx.lake.discard_staging(ctx.run_id)
    finally:
        shutil.rmtree(curated, ignore_errors=True)


if __name__ == "__main__":
    main()
