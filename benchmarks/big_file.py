"""Bounded-memory benchmark: ingest ONE big interactions CSV into a fresh lake (issues #8, #11).

    .venv/bin/python benchmarks/big_file.py --size 2GB [--workdir /tmp/stream-work/bigfile]

The file is built once per size under the work dir and reused: `servio.tools.generate` writes ~1 M
interactions as usual (default messiness: its small share of bad rows, in-file conflicting
duplicates and a re-export file), those rows are read as text and written again and again
with a copy prefix on `interaction_id` (`c3-…`, so ids stay unique between copies) into one
CSV until it reaches the requested size. The ingest (`pending_files` + `stage_file` +
`publish_ingest`, `benchmarks/run.py`'s ingest stage) runs in a fresh subprocess; its wall
time, rows, MB/s and peak RSS (`os.wait4` / `/usr/bin/time`) are written to
`benchmarks/results/<date>-bigfile-<size>.json` and `.md`. No goal is asserted here.

`--one-chunk` measures instead `stage_file` alone on the big file's first
`STAGE_CHUNK_ROWS − 1` rows (one chunk, no whole-file passes): the memory of staging one
chunk (`<date>-bigfile-one-chunk.json`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `servio`, `benchmarks`, … importable
    sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from benchmarks import run  # noqa: E402

DEFAULT_WORKDIR = Path("/tmp/stream-work/bigfile")
BASE_CUSTOMERS = 100_000  # ~1 M interactions per generated base set
BIG_FILE = "interactions_big.csv"


def parse_size(label: str) -> int:
    """'2GB' → 2·10^9 bytes; also 500MB, 1.5GB, or a plain number of bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?", label.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like 500MB or 2GB, got {label!r}")
    factor = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[match.group(2).lower()]
    return int(float(match.group(1)) * factor)


def base_rows(workdir: Path) -> pl.DataFrame:
    """The generator's interaction rows (every export file, re-export included) as text."""
    from servio.raw import landing
    from servio.schemas.raw import INTERACTIONS_RAW
    from servio.tools.generate import GenerateOptions, generate

    base = workdir / "base"
    marker = base / "generated.json"
    if not marker.exists():
        shutil.rmtree(base, ignore_errors=True)
        options = GenerateOptions(
            customers=BASE_CUSTOMERS,
            interactions_per_customer=10.0,
            days=365,
            survey_rate=0.1,
            formats=("csv",),
        )
        report = generate(base / "raw", options)
        marker.write_text(json.dumps({"interaction_rows": report.interaction_rows}))
    # Every column of the generated exports, personal data included (servio's readers keep
    # only the contract's): the big file must look like a real export.
    frames = [
        pl.read_csv(landed.path, infer_schema=False)
        for landed in landing.discover(base / "raw")
        if landed.source == INTERACTIONS_RAW.source
    ]
    return pl.concat(frames, how="diagonal")


def ensure_big_file(paths: run.Paths, size_bytes: int) -> dict[str, Any]:
    """One interactions CSV of at least `size_bytes`, built once per size and reused."""
    target = paths.raw / "interactions" / BIG_FILE
    marker = paths.base / "generated.json"
    if marker.exists() and target.exists():
        return dict(json.loads(marker.read_text()), reused=True)
    shutil.rmtree(paths.raw, ignore_errors=True)
    target.parent.mkdir(parents=True)
    started = time.perf_counter()
    rows = base_rows(paths.base.parent)
    partial = target.with_name("_" + target.name)  # in-flight name: discovery skips it
    copies = 0
    with partial.open("wb") as out:
        while out.tell() < size_bytes:
            prefix = pl.lit(f"c{copies}-")
            copy = rows.with_columns(
                pl.when(pl.col("interaction_id").is_not_null())
                .then(prefix + pl.col("interaction_id"))
                .alias("interaction_id")
            )
            copy.write_csv(out, include_header=copies == 0)
            copies += 1
    partial.rename(target)
    facts = {
        "file": str(target),
        "bytes": target.stat().st_size,
        "rows": copies * rows.height,
        "copies": copies,
        "base_rows": rows.height,
        "seconds": round(time.perf_counter() - started, 1),
    }
    marker.write_text(json.dumps(facts, indent=2))
    return dict(facts, reused=False)


def one_chunk_paths(paths: run.Paths) -> run.Paths:
    """A landing zone holding one chunk's worth of the big file's rows."""
    from servio.steps.context import STAGE_CHUNK_ROWS

    small = run.Paths(paths.base, "one-chunk")
    target = small.raw / "interactions" / "one_chunk.csv"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        big = pl.scan_csv(paths.raw / "interactions" / BIG_FILE, infer_schema=False)
        big.head(STAGE_CHUNK_ROWS - 1).sink_csv(target)
    return small


def stage_only(paths: run.Paths) -> dict[str, Any]:
    """The discover and stage steps alone for every pending file: nothing is published, so
    this is not a run of the sequence (no lock is needed)."""
    from servio.steps.context import RunContext
    from servio.steps.discover import discover
    from servio.steps.stage import stage_file

    shutil.rmtree(paths.curated, ignore_errors=True)
    ctx = RunContext.start(paths.settings(), run_id="bench-stage")
    start = time.perf_counter()
    staged = [stage_file(ctx, landed) for landed in discover(ctx).todo]
    ctx.lake.discard_staging(ctx.run_id)
    return {
        "timings": {"total_s": time.perf_counter() - start},
        "rows_read": sum(s.rows_read for s in staged),
        "rows_valid": sum(s.rows_valid for s in staged),
        "rows_quarantined": sum(s.rows_quarantined for s in staged),
    }


def run_ingest_subprocess(paths: run.Paths, label: str, *extra: str) -> dict[str, Any]:
    """`run.stage_servio_ingest` (or `stage_only` with `--one-chunk`) in a fresh interpreter:
    its own wall time and peak RSS."""
    out = paths.base / "ingest.json"
    out.unlink(missing_ok=True)
    rss_file = paths.base / "ingest.rss"
    timer = (
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file)] if Path("/usr/bin/time").exists() else []
    )
    command = [
        *timer,
        sys.executable,
        str(Path(__file__).resolve()),
        "--ingest-child",
        "--size",
        label,
        "--workdir",
        str(paths.base.parent),
        *extra,
    ]
    load_before = run.uptime_load()
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"the ingest subprocess failed (exit code {code})")
    result: dict[str, Any] = json.loads(out.read_text())
    kib = int(rss_file.read_text().split()[-1]) if timer else usage.ru_maxrss
    result.update(
        process_wall_s=wall,
        peak_rss_bytes=kib * 1024,  # Linux reports kilobytes
        cpu_s=usage.ru_utime + usage.ru_stime,
        load_before=load_before,
        load_after=run.uptime_load(),
    )
    return result


def markdown(result: dict[str, Any]) -> str:
    ingest, big = result["ingest"], result["input"]
    timings = ingest["timings"]
    mb = big["bytes"] / 1e6
    lines = [
        f"# servio big-file ingest {result['size']} — {result['date']}",
        "",
        f"Input: one interactions CSV, {mb:,.0f} MB, {big['rows']:,} rows "
        f"({big['copies']} copies of the generator's {big['base_rows']:,} rows, ids prefixed).",
        f"Machine: {result['machine']['nproc']} CPUs, {result['machine']['memory_gib']} GiB, "
        f"Polars {result['machine']['polars']}; load average before {ingest['load_before']}, "
        f"after {ingest['load_after']} — shared machine. Staging chunk: "
        f"{result['chunk_rows']:,} rows.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| wall time, whole subprocess (s) | {ingest['process_wall_s']:.1f} |",
        f"| stage_file (s) | {timings['stage_files_s']:.1f} |",
        f"| publish_ingest (s) | {timings['publish_ingest_s']:.1f} |",
        f"| rows read / valid / quarantined | {ingest['rows_read']:,} / "
        f"{ingest['rows_valid']:,} / {ingest['rows_quarantined']:,} |",
        f"| rows/s (stage + publish) | {ingest['rows_read'] / timings['total_s']:,.0f} |",
        f"| MB/s (stage + publish) | {mb / timings['total_s']:.2f} |",
        f"| peak RSS (MiB) | {ingest['peak_rss_bytes'] / 1024**2:,.0f} |",
        f"| curated interactions rows | {ingest['table_rows'].get('interactions', 0):,} |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", default="2GB", help="size of the CSV: 500MB, 2GB, …")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--results-dir", type=Path, default=run.RESULTS_DIR)
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--one-chunk", action="store_true", help="stage one chunk's rows only")
    parser.add_argument("--ingest-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    paths = run.Paths(args.workdir.resolve(), args.size)

    if args.ingest_child:  # inside the measured subprocess
        if args.one_chunk:
            result = stage_only(run.Paths(paths.base, "one-chunk"))
        else:
            result = run.stage_servio_ingest(paths)
        (paths.base / "ingest.json").write_text(json.dumps(result, indent=2, default=str))
        return 0

    machine = run.machine_facts()
    print(f"big-file benchmark {args.size}, load {run.uptime_load()}", flush=True)
    big = ensure_big_file(paths, size)
    print(f"  input: {big['bytes'] / 1e6:,.0f} MB, {big['rows']:,} rows", flush=True)
    if args.generate_only:
        return 0
    from servio.steps.context import STAGE_CHUNK_ROWS

    if args.one_chunk:
        one_chunk_paths(paths)
        ingest = run_ingest_subprocess(paths, args.size, "--one-chunk")
        result = {
            "date": dt.date.today().isoformat(),
            "what": "stage_file of one chunk's rows (no publish)",
            "chunk_rows": STAGE_CHUNK_ROWS,
            "rows": ingest["rows_read"],
            "stage": ingest,
        }
        stem = args.results_dir / f"{result['date']}-bigfile-one-chunk"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(
            f"  one chunk ({result['rows']:,} rows): {ingest['timings']['total_s']:.1f} s, "
            f"peak RSS {ingest['peak_rss_bytes'] / 1024**2:,.0f} MiB, load {ingest['load_after']}"
        )
        return 0
    ingest = run_ingest_subprocess(paths, args.size)
    shutil.rmtree(paths.curated, ignore_errors=True)  # the lake itself is not kept
    result = {
        "date": dt.date.today().isoformat(),
        "size": args.size,
        "machine": machine,
        "chunk_rows": STAGE_CHUNK_ROWS,
        "input": big,
        "ingest": ingest,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = args.results_dir / f"{result['date']}-bigfile-{args.size}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
