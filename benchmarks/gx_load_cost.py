"""CPU of loading Great Expectations in a process that validates (issues #18 and #20): each
sample is a fresh Python that imports servio's flows (as a warm ingest process, a `servio run`
or a Dask worker does before it validates), then calls `validation.gx.load()` (GX's import and
its ephemeral context). Process CPU seconds of each part; the machine's speed drifts, so
compare two versions with samples taken alternately, not one after the other.

    .venv/bin/python -m benchmarks.gx_load_cost [--repeat 6]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

SAMPLE = """
import time
start = time.process_time()
import servio.flows.ingest_file
imported = time.process_time()
from servio.validation import gx
gx.load()
print(imported - start, time.process_time() - imported)
"""


def sample() -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, "-c", SAMPLE], capture_output=True, text=True, check=True
    )
    flows, load = done.stdout.split()
    return float(flows), float(load)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=6)
    args = parser.parse_args(argv)
    samples = [sample() for _ in range(args.repeat)]
    for name, values in (
        ("flows import", [s[0] for s in samples]),
        ("gx.load()", [s[1] for s in samples]),
    ):
        print(
            f"{name:13s} CPU-s: mean {statistics.mean(values):.2f}, "
            f"min {min(values):.2f}, max {max(values):.2f} over {len(values)} processes"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
