"""Peak memory of a snapshot's combine step at the 100M scale's customer count (issue 20:
snapshot peak RSS ≤ 4 GiB with 10M customers; it was 7.0 GB).

Two phases, the measured one in a fresh process:

1. **build** (this process): a small real lake (generated exports, ingested with the
   sequence, required-only validator) gives real bucket outputs — `reduce_bucket` of one
   bucket: customer_quality, customer_money, purchase_summary and service_counts rows. They
   are replicated with new customer ids (`<id>~<k>`) into `--buckets` bucket parts, up to
   `--customers` customers, exactly as bucket tasks write them (quality sorted by
   customer_id). The lake's survey responses are replicated the same way, with new response
   ids, to `--responses` rows and published into the lake: the combine step reads the
   window's responses from it (key drivers, NPS).
2. **measure** (`python -m benchmarks.snapshot_memory measure <dir>` in a subprocess):
   `servio.steps.buckets.combine` over those outputs — every whole-population figure, the
   value model fits, every table written to its partition file — then the peak RSS of that
   process (VmHWM), its wall time and the files' row counts.

Run:  .venv/bin/python -m benchmarks.snapshot_memory [all [WORK_DIR]] [--customers 10000000]
      [--buckets 16] [--responses 9600000] [--keep]   (WORK_DIR: /tmp/servio-snapshot-memory)

Peak RSS is the measuring process's `VmHWM` (Linux): `ru_maxrss` is kept across `exec`, so
in a child it starts at its parent's peak (the build's, about 0.9 GB at 10M customers).
Writes benchmarks/results/<date>-snapshot-memory-<n>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from benchmarks.run import code_version

RESULTS = Path(__file__).parent / "results"
GOAL_MIB = 4 * 1024
AS_OF = date(2026, 11, 26)
RUN_ID = "20261201T000000Z-snapshot-memory"


def _settings(work: Path) -> object:
    from servio.config import load_settings

    config = work / "servio.toml"
    config.write_text(
        f'raw_root = "{(work / "raw").as_posix()}"\n'
        f'curated_root = "{(work / "curated").as_posix()}"\n'
    )
    return load_settings(config)


def build(work: Path, customers: int, buckets: int, responses: int, seed_customers: int) -> None:
    from servio.lake import Lake, TableChange
    from servio.schemas.tables import survey_responses_table
    from servio.steps import buckets as snapshot_buckets
    from servio.steps import sequence
    from servio.steps.context import RunContext
    from servio.tools.generate import GenerateOptions, generate
    from servio.validation import RequiredOnlyValidator

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    generate(work / "raw", GenerateOptions(customers=seed_customers, days=365, seed=20))
    settings = _settings(work)
    ctx = RunContext.start(settings, validator=RequiredOnlyValidator())  # type: ignore[arg-type]
    sequence.run(ctx, sequence.Plan(snapshot=None, data_docs=False))
    lake = Lake(settings.curated_root)  # type: ignore[attr-defined]

    one = settings.model_copy(update={"snapshot_buckets": 1})  # type: ignore[attr-defined]
    job = snapshot_buckets.SnapshotJob(one, lake, "seed-bucket", AS_OF)
    seed = snapshot_buckets.reduce_bucket(job, 0)
    frames = {
        "quality": pl.read_parquet(seed.quality_path),
        "money": pl.read_parquet(seed.money_path),
        "summary": pl.read_parquet(seed.summary_path),
        "service": pl.read_parquet(seed.service_path),
    }
    lake.discard_staging("seed-bucket")
    per_copy = frames["quality"].height
    copies = -(-customers // per_copy)
    parts = work / "buckets"
    parts.mkdir()
    outputs = []
    for bucket in range(buckets):
        mine = list(range(bucket, copies, buckets))
        paths = {}
        for name, frame in frames.items():
            if name == "service":  # per (channel, queue): one copy per customer copy
                rows = pl.concat([frame] * len(mine)) if mine else frame.clear()
            else:
                copies_of = pl.DataFrame(
                    {"_copy": [f"~{k:06d}" for k in mine]}, schema={"_copy": pl.String}
                )
                rows = (
                    frame.join(copies_of, how="cross")
                    .with_columns(pl.col("customer_id") + pl.col("_copy"))
                    .drop("_copy")
                )
            paths[name] = str(parts / f"{name}-{bucket:05d}.parquet")
            if name == "quality":  # sorted, in the row groups the combine step merges
                snapshot_buckets.write_quality_part(rows, paths[name])
            else:
                rows.write_parquet(paths[name])
            del rows
        outputs.append(
            {
                "bucket": bucket,
                "quality_path": paths["quality"],
                "money_path": paths["money"],
                "summary_path": paths["summary"],
                "service_path": paths["service"],
                "customers": per_copy * len(mine),
            }
        )

    # The window's responses at scale, published into the lake by submitted_date.
    table = survey_responses_table(settings.catalog)  # type: ignore[attr-defined]
    published = lake.scan(table).collect()
    response_copies = max(1, -(-responses // max(published.height, 1)))
    suffixes = pl.DataFrame({"_copy": [f"~{k:06d}" for k in range(response_copies)]})
    days = sorted(published.partition_by("submitted_date", as_dict=True).items())
    for first in range(0, len(days), 20):  # 20 days per publication: bounded memory here
        changes = {
            day: rows.join(suffixes, how="cross")
            .with_columns(
                pl.col("response_id") + pl.col("_copy"), pl.col("customer_id") + pl.col("_copy")
            )
            .drop("_copy")
            for (day,), rows in days[first : first + 20]
        }
        lake.publish("scale-responses", [TableChange(table, changes)])
        del changes
    manifest = {
        "customers": sum(o["customers"] for o in outputs),  # type: ignore[misc]
        "seed_customers": per_copy,
        "copies": copies,
        "buckets": buckets,
        "responses": published.height * response_copies,
        "outputs": outputs,
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2))


def measure(work: Path) -> None:
    """In a fresh process: the combine step over the built outputs; prints JSON."""
    from servio.lake import Lake
    from servio.steps import buckets as snapshot_buckets

    manifest = json.loads((work / "manifest.json").read_text())
    settings = _settings(work).model_copy(  # type: ignore[attr-defined]
        update={"snapshot_buckets": manifest["buckets"]}
    )
    lake = Lake(settings.curated_root)
    job = snapshot_buckets.SnapshotJob(settings, lake, RUN_ID, AS_OF)
    outputs = [snapshot_buckets.BucketOutput(**o) for o in manifest["outputs"]]
    before = _peak_kib()
    started = time.perf_counter()
    combined = snapshot_buckets.combine(job, outputs, 0)
    seconds = time.perf_counter() - started
    peak = _peak_kib()
    rows = {
        name: pl.scan_parquet(p).select(pl.len()).collect().item()
        for name, p in combined.files.items()
    }
    lake.discard_staging(RUN_ID)
    print(
        json.dumps(
            {
                "combine_s": round(seconds, 1),
                "peak_rss_mib": round(peak / 1024),
                "rss_before_combine_mib": round(before / 1024),
                "rows": rows,
                "customers": combined.customers,
                "warnings": list(combined.warnings),
            }
        )
    )


def _peak_kib() -> int:
    """This process's peak resident memory in KiB: VmHWM where /proc has it, which starts
    at exec; elsewhere ru_maxrss (which may include the parent's peak)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", nargs="?", default="all", choices=["all", "measure"])
    parser.add_argument("work_dir", nargs="?", default="/tmp/servio-snapshot-memory")
    parser.add_argument("--customers", type=int, default=10_000_000)
    parser.add_argument("--buckets", type=int, default=16)
    parser.add_argument("--responses", type=int, default=9_600_000)
    parser.add_argument("--seed-customers", type=int, default=2_000)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(args.work_dir)
    if args.phase == "measure":
        measure(work)
        return

    started = time.perf_counter()
    build(work, args.customers, args.buckets, args.responses, args.seed_customers)
    build_s = time.perf_counter() - started
    load_before = list(os.getloadavg())
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.snapshot_memory", "measure", str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    manifest = json.loads((work / "manifest.json").read_text())
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "what": "servio.steps.buckets.combine (whole-population figures, value fits, every "
        "snapshot table written to its partition file) in a fresh process",
        "command": f".venv/bin/python -m benchmarks.snapshot_memory --customers {args.customers} "
        f"--buckets {args.buckets} --responses {args.responses}",
        "commit": code_version(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_before_measure": load_before,
        "customers": manifest["customers"],
        "buckets": manifest["buckets"],
        "responses": manifest["responses"],
        "seed_customers": manifest["seed_customers"],
        "build_s": round(build_s, 1),
        **measured,
        "goal_mib": GOAL_MIB,
        "met": measured["peak_rss_mib"] <= GOAL_MIB,
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    scale = (
        f"{args.customers // 1_000_000}M"
        if args.customers >= 1_000_000
        else f"{args.customers // 1000}k"
    )
    stem = RESULTS / f"{result['date']}-snapshot-memory-{scale}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


def _markdown(r: dict) -> str:  # type: ignore[type-arg]
    lines = [
        f"# Snapshot combine step, {r['customers']:,} customers in {r['buckets']} buckets ({r['date']})",
        "",
        f"Command: `{r['command']}` on commit `{r['commit']}`; {r['machine']}; "
        f"load average before the measured process {r['load_average_before_measure']}.",
        f"Bucket outputs: {r['seed_customers']:,} real customers' rows (a generated lake, 365 "
        f"days) replicated with new ids; {r['responses']:,} survey responses in the window.",
        "",
        "| measured (fresh process) | value | goal |",
        "|---|---:|---|",
        f"| peak RSS of combine, MiB | {r['peak_rss_mib']:,} | ≤ {r['goal_mib']:,} ({'met' if r['met'] else 'NOT met'}) |",
        f"| RSS before combine (imports), MiB | {r['rss_before_combine_mib']:,} | |",
        f"| combine wall s | {r['combine_s']} | |",
        "",
        "| table | rows written |",
        "|---|---:|",
        *(f"| {name} | {n:,} |" for name, n in r["rows"].items()),
    ]
    if r["warnings"]:
        lines += ["", *(f"- warning: {w}" for w in r["warnings"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
