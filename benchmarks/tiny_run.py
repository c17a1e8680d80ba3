"""The fixed cost of one small run (issues #18, #19, #20): the run sequence in process over a
tiny lake, as every hypothesis example of the hostile-corpus, fuzz and kill tests and every
served ingest runs it.

Each round starts from an empty lake: run 1 ingests two small exports (interactions,
surveys) and publishes the snapshot; run 2 lands one more small export and ingests it and
publishes the snapshot again (a served ingest on a lake that exists). Both runs are timed
(wall and CPU of this process, all threads), with `RequiredOnlyValidator` and with
`GxValidator` (Great Expectations imported, and its suite loaded, once before timing).
Then one more round per validator runs under cProfile: the top 25 functions by cumulative
time, and how often the known fixed costs were paid (DeltaTable opens, Polars collects,
DuckDB catalog writes).

    .venv/bin/python -m benchmarks.tiny_run [--rounds 5] [--out benchmarks/results/NAME]

Writes NAME.json and NAME.md (default: benchmarks/results/<date>-tiny-run).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import inspect
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import polars as pl  # noqa: E402
from deltalake import DeltaTable  # noqa: E402

from benchmarks.run import code_version  # noqa: E402
from servio.config import Settings, load_settings  # noqa: E402
from servio.lake import catalog  # noqa: E402
from servio.lake.lake import Lake  # noqa: E402
from servio.steps import sequence  # noqa: E402
from servio.steps.context import RunContext  # noqa: E402
from servio.tools.generate import GenerateOptions, generate  # noqa: E402
from servio.validation import RequiredOnlyValidator, Validator  # noqa: E402

FIRST = ("interactions/interactions_001_", "surveys/surveys_001_")  # run 1: two files
SECOND = ("interactions/interactions_002_",)  # run 2: one more file
PLAN = sequence.Plan(data_docs=False)  # as the tests run it (tests/runs.py, WITHOUT_DOCS)
# Fixed costs counted in the profile: (label, function).
COUNTED: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("DeltaTable opens", DeltaTable.__init__),
    ("DeltaTable.update_incremental", DeltaTable.update_incremental),
    ("LazyFrame.collect (Polars' own collects included)", pl.LazyFrame.collect),
    ("DuckDB catalog writes", catalog.write_catalog),
    ("Lake.scan", Lake.scan),
)


@dataclass
class Corpus:
    """The generated exports, once per benchmark: each round copies the files it lands."""

    folder: Path

    def files(self, prefixes: tuple[str, ...]) -> list[Path]:
        found = sorted(
            p
            for p in (self.folder / "raw").rglob("*")
            if p.is_file() and str(p.relative_to(self.folder / "raw")).startswith(prefixes)
        )
        assert len(found) == len(prefixes), found
        return found

    def land(self, lake: Path, prefixes: tuple[str, ...]) -> None:
        for path in self.files(prefixes):
            target = lake / "raw" / path.relative_to(self.folder / "raw")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def make_corpus(where: Path) -> Corpus:
    generate(
        where / "raw",
        GenerateOptions(customers=20, days=5, seed=3, end_date=date(2026, 11, 20)),
    )
    return Corpus(where)


def new_lake(where: Path) -> Settings:
    where.mkdir(parents=True)
    (where / "servio.toml").write_text(
        f'raw_root = "{(where / "raw").as_posix()}"\n'
        f'curated_root = "{(where / "curated").as_posix()}"\n'
    )
    return load_settings(where / "servio.toml")


def one_round(
    corpus: Corpus, base: Path, validator: Validator, around: Callable[[Callable[[], Any]], Any]
) -> list[dict[str, float]]:
    """Run 1 (two files, empty lake) and run 2 (one more file): wall and CPU of each."""
    settings = new_lake(base)
    timings = []
    for prefixes in (FIRST, SECOND):
        corpus.land(base, prefixes)
        ctx = RunContext.start(settings, validator=validator)
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = around(functools.partial(sequence.run, ctx, PLAN))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert outcome.ingest is not None and outcome.ingest.files_ingested == len(prefixes), (
            outcome.ingest
        )
        assert outcome.snapshot is not None and outcome.snapshot.published, outcome.snapshot
        timings.append({"wall_s": round(wall, 4), "cpu_s": round(cpu, 4)})
    shutil.rmtree(base)
    return timings


def counted(stats: pstats.Stats) -> dict[str, int]:
    calls: dict[str, int] = {}
    for label, function in COUNTED:
        code = inspect.unwrap(function).__code__
        where = (code.co_filename, code.co_firstlineno, code.co_name)
        calls[label] = stats.stats.get(where, (0,))[0]  # type: ignore[attr-defined]
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", choices=("required", "gx"), default=None)
    parser.add_argument("--dump", type=Path, default=None, help="keep the raw profiles here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="servio-tiny-run-"))
    corpus = make_corpus(work / "corpus")
    validators: dict[str, Callable[[], Validator]] = {"required": RequiredOnlyValidator}
    if args.only != "required":
        from servio.validation.gx import GxValidator

        validators["gx"] = GxValidator
    if args.only:
        validators = {args.only: validators[args.only]}
    load_before = os.getloadavg()
    result: dict[str, Any] = {"validators": {}}
    profiles: dict[str, str] = {}
    plain: Callable[[Callable[[], Any]], Any] = lambda fn: fn()  # noqa: E731
    for name, make in validators.items():
        validator = make()
        one_round(corpus, work / f"{name}-warm", validator, plain)  # imports, GX suite loaded
        rounds = [
            one_round(corpus, work / f"{name}-{i}", validator, plain) for i in range(args.rounds)
        ]
        profiler = cProfile.Profile()
        one_round(corpus, work / f"{name}-profiled", validator, profiler.runcall)
        stats = pstats.Stats(profiler)
        if args.dump:
            stats.dump_stats(f"{args.dump}-{name}.prof")
        text = io.StringIO()
        stats.stream = text  # type: ignore[attr-defined]
        stats.sort_stats("cumulative").print_stats(25)
        profiles[name] = text.getvalue()
        summary: dict[str, Any] = {}
        for index, label in enumerate(("run1_two_files", "run2_one_more_file")):
            walls = [r[index]["wall_s"] for r in rounds]
            cpus = [r[index]["cpu_s"] for r in rounds]
            summary[label] = {
                "wall_s_median": round(statistics.median(walls), 4),
                "cpu_s_median": round(statistics.median(cpus), 4),
                "wall_s": walls,
                "cpu_s": cpus,
            }
        summary["profiled_round_calls"] = counted(stats)
        result["validators"][name] = summary
    load_after = os.getloadavg()
    shutil.rmtree(work, ignore_errors=True)

    result |= {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": code_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rounds": args.rounds,
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"{datetime.now(UTC):%Y-%m-%d}-tiny-run"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        f"# The fixed cost of one small run ({result['date']}, commit {result['commit']})",
        "",
        f"{result['machine']}; load average before: "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in load_after),
        "",
        f"`.venv/bin/python -m benchmarks.tiny_run --rounds {args.rounds}`: per round, an "
        "empty lake; run 1 ingests two small exports and publishes the snapshot, run 2 one "
        "more export and the snapshot again (no Data Docs, as the tests run). Medians of "
        f"{args.rounds} rounds, in seconds (CPU: this process, all threads).",
        "",
        "| validator | run | wall | CPU |",
        "|---|---|---|---|",
    ]
    for name, summary in result["validators"].items():
        for label in ("run1_two_files", "run2_one_more_file"):
            row = summary[label]
            md.append(f"| {name} | {label} | {row['wall_s_median']} | {row['cpu_s_median']} |")
    for name, summary in result["validators"].items():
        md += ["", f"## {name}: calls in the profiled round (both runs)", ""]
        md += [f"- {label}: {n}" for label, n in summary["profiled_round_calls"].items()]
        md += ["", "```", profiles[name].strip(), "```"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
