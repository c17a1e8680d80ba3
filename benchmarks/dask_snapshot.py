"""The snapshot on a local two-worker Dask cluster vs one process, on the benchmark's lake.

    .venv/bin/python benchmarks/dask_snapshot.py --scale 10M [--buckets 8] [--workers 2]

Needs the lake `benchmarks/run.py --scale S` left in `benchmarks/work/S/curated-servio`.
Each mode runs in a fresh process and recomputes (force) and republishes the same snapshot:
`single` (one bucket, in this process, as `servio run` does by default) and `dask`
(`--buckets` customer-hash buckets: shuffle and bucket tasks on a `distributed.LocalCluster`
of `--workers` worker processes, combine and publish here). Reports wall time, the
shuffle volume, peak RSS of the driver and of each worker, and checks that both modes
published identical tables. Results: `benchmarks/results/<date>-<scale>-dask.{json,md}`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run import DEFAULT_WORKDIR, RESULTS_DIR, machine_facts, uptime_load  # noqa: E402


def _lake_settings(lake_dir: Path, buckets: int) -> Any:
    from servio.config import load_settings

    return load_settings(
        None,
        {
            "SERVIO_RAW_ROOT": str(lake_dir.parent / "raw"),
            "SERVIO_CURATED_ROOT": str(lake_dir),
            "SERVIO_SNAPSHOT_BUCKETS": str(buckets),
        },
    )


def _digest(lake_dir: Path, settings: Any, as_of: dt.date) -> dict[str, str]:
    """A content hash per snapshot table for `as_of`, to compare the two modes."""
    import polars as pl

    from servio.lake.lake import Lake
    from servio.schemas.snapshot_tables import (
        CUSTOMER_PROFITABILITY,
        CUSTOMER_SEGMENTS,
        customer_quality_table,
    )

    lake = Lake(lake_dir)
    out = {}
    for table in (
        customer_quality_table(settings.catalog),
        CUSTOMER_PROFITABILITY,
        CUSTOMER_SEGMENTS,
    ):
        frame = lake.scan(table).filter(pl.col("as_of_date") == as_of).sort("customer_id").collect()
        out[table.name] = str(frame.hash_rows().sum()) + f"/{frame.height}"
    return out


def run_mode(mode: str, lake_dir: Path, buckets: int, workers: int) -> dict[str, Any]:
    """Inside the mode's subprocess."""
    from servio.lake import Lake
    from servio.steps import sequence
    from servio.steps.context import RunContext
    from servio.steps.snapshot import latest_activity_date

    settings = _lake_settings(lake_dir, 1 if mode == "single" else buckets)
    lake = Lake(lake_dir)
    as_of = latest_activity_date(lake, settings)
    assert as_of is not None
    plan = sequence.Plan(ingest=None, snapshot=as_of, force_snapshot=True, data_docs=False)
    result: dict[str, Any] = {"mode": mode, "buckets": settings.snapshot_buckets}
    if mode == "single":
        started = time.perf_counter()
        summary = sequence.run(RunContext.start(settings, "snapshot"), plan).snapshot
        result["wall_s"] = time.perf_counter() - started
    else:
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):

            def on_cluster(fn: Any, calls: Any) -> list[Any]:
                return client.gather([client.submit(fn, *args, pure=False) for args in calls])

            client.run(lambda: None)  # workers up before the clock starts
            started = time.perf_counter()
            ctx = RunContext.start(settings, "snapshot", mapper=on_cluster)
            summary = sequence.run(ctx, plan).snapshot
            result["wall_s"] = time.perf_counter() - started
            rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            result["worker_peak_rss_mib"] = sorted(round(v / 1024) for v in rss.values())
    result["customers"] = summary.customers
    result["shuffle_bytes"] = summary.shuffle_bytes
    result["driver_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["tables"] = _digest(lake_dir, settings, as_of)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", default="10M")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--buckets", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=("single", "dask"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lake_dir = (args.workdir / args.scale / "curated-servio").resolve()
    if args.mode:
        print(json.dumps(run_mode(args.mode, lake_dir, args.buckets, args.workers)))
        return 0
    if not (lake_dir / "interactions").exists():
        raise SystemExit(f"no lake at {lake_dir}: run benchmarks/run.py --scale {args.scale}")
    load_before = uptime_load()
    results = []
    for mode in ("single", "dask"):
        command = [sys.executable, __file__, "--scale", args.scale, "--workdir", str(args.workdir)]
        command += ["--buckets", str(args.buckets), "--workers", str(args.workers), "--mode", mode]
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {mode}: {results[-1]['wall_s']:.1f} s", flush=True)
    single, dask = results
    same = single["tables"] == dask["tables"]
    summary = {
        "date": dt.date.today().isoformat(),
        "scale": args.scale,
        "machine": machine_facts(),
        "load_before": load_before,
        "load_after": uptime_load(),
        "single": single,
        "dask": dask,
        "dask_over_single": dask["wall_s"] / single["wall_s"],
        "identical_tables": same,
    }
    stem = RESULTS_DIR / f"{summary['date']}-{args.scale}-dask"
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    lines = [
        f"# servio snapshot on Dask, {args.scale} — {summary['date']}",
        "",
        f"Tables identical in both modes: **{'yes' if same else 'NO'}**. Load average before "
        f"{load_before}, after {summary['load_after']}.",
        "",
        "| mode | buckets | wall s | shuffle MB | driver peak RSS MiB | worker peak RSS MiB |",
        "|---|---:|---:|---:|---:|---|",
        f"| one process | 1 | {single['wall_s']:.1f} | 0 | {single['driver_peak_rss_mib']} | — |",
        f"| Dask, {args.workers} local workers | {dask['buckets']} | {dask['wall_s']:.1f} | "
        f"{dask['shuffle_bytes'] / 1e6:.0f} | {dask['driver_peak_rss_mib']} | "
        f"{', '.join(map(str, dask['worker_peak_rss_mib']))} |",
        "",
        f"Dask ÷ one process: {summary['dask_over_single']:.2f}×.",
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
