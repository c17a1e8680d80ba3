"""Where the test suite's CPU time goes: a pytest plugin and its summary.

    SERVIO_SUITE_CPU=/tmp/suite-cpu .venv/bin/pytest -p benchmarks.suite_cpu -n auto ...
    .venv/bin/python -m benchmarks.suite_cpu /tmp/suite-cpu

Each test process appends, per test, the CPU seconds (user + system) of itself and of the
children it waited for (getrusage), over setup, call and teardown, the wall seconds, and the
CPU seconds of the test process alone (`own-s`). On two cores the suite cannot take less than
(total CPU seconds) / 2, however the tests are scheduled: this is what tells which tests to
make cheaper. A child reaped late (a server a
session fixture stops) is counted in the test during which it ended.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

OUT = "SERVIO_SUITE_CPU"


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process, and of it with the children it waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = own.ru_utime + own.ru_stime
    return mine, mine + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Iterator[None]:
    (own, cpu), wall = _cpu(), time.monotonic()
    yield
    (own_after, cpu_after), wall_after = _cpu(), time.monotonic()
    folder = Path(os.environ.get(OUT, "suite-cpu"))
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{os.getpid()}.tsv").open("a", encoding="utf-8") as out:
        out.write(
            f"{item.nodeid}\t{cpu_after - cpu:.2f}\t{wall_after - wall:.2f}"
            f"\t{own_after - own:.2f}\n"
        )


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else os.environ.get(OUT, "suite-cpu"))
    by_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    workers = []
    for path in sorted(folder.glob("*.tsv")):
        cpu = wall = 0.0
        for line in path.read_text(encoding="utf-8").splitlines():
            nodeid, c, w, *own = line.split("\t")  # own: absent in files of older runs
            entry = by_file[nodeid.split("::")[0]]
            entry[0] += float(c)
            entry[1] += float(w)
            entry[2] += float(own[0]) if own else 0.0
            entry[3] += 1
            cpu, wall = cpu + float(c), wall + float(w)
        workers.append((path.stem, cpu, wall))
    total = sum(c for _, c, _ in workers)
    print(f"{total:.0f} CPU-s in {sum(int(e[3]) for e in by_file.values())} tests")
    for pid, cpu, wall in workers:
        print(f"  process {pid}: {cpu:.0f} CPU-s, {wall:.0f} s of tests")
    print("\n  CPU-s   own-s   wall-s  tests  file")
    for name, (cpu, wall, own, n) in sorted(by_file.items(), key=lambda kv: -kv[1][0]):
        print(f"{cpu:7.1f} {own:7.1f} {wall:8.1f} {int(n):6d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
