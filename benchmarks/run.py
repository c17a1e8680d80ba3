"""End-to-end benchmark of servio against an I/O floor and an independent DuckDB SQL peer.

    .venv/bin/python benchmarks/run.py --scale 1M [--workdir benchmarks/work] [--no-prefect]
    SERVIO_SNAPSHOT_BUCKETS=16 .venv/bin/python benchmarks/run.py --scale 100M --servio-only

Scale S: S interactions (S/10 customers × 10), ~S/10 survey responses, raw CSV as
`servio.tools.generate` writes it (default messiness). Every stage runs in a fresh subprocess, so
its peak RSS (`os.wait4`) is its own: servio ingest (`pending_files` + `stage_file` per file +
`publish_ingest`), servio snapshots (`build_snapshots`), the I/O floor (Polars
`scan_csv → sink_parquet`, DuckDB `COPY … TO parquet`), the DuckDB SQL peer (raw CSV →
curated → snapshots) and the Prefect `run_pipeline` flow. The peer's tables are compared with
servio's; any difference marks the run INVALID. Results: `benchmarks/results/<date>-<scale>.json`
and `.md`. `--servio-only` runs servio's two stages alone (for a scale whose peer would not fit
in memory: the DuckDB peer peaked at 9 GB at 10M); nothing is compared then. `SERVIO_<KEY>`
settings in the environment apply as they do to `servio run` (the roots are the benchmark's).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `servio` and `benchmarks` importable
    sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_WORKDIR = ROOT / "benchmarks" / "work"
FLOAT_TOLERANCE = 1e-9
GOAL_PREFECT_OVERHEAD = 0.10
GOAL_RSS_BYTES = 4 * 1024**3
PEER_MEMORY_LIMIT = "2GB"  # the DuckDB peer spills beyond it
GOAL_INGEST_OVER_FLOOR = 3.0  # issue #20, at 1M
GOAL_INGEST_OVER_FLOOR_LARGE = 2.0  # issue #20, at 10M
GOAL_END_TO_END_OVER_PEER = 0.7  # issue #20
REFERENCE_TIME_ENV = "SERVIO_BENCH_INGESTED_AT"
SETTLE_SECONDS = 5.0  # before each stage: the machine quiet after the previous one's writes
SERVIO_STAGES = ("servio_ingest", "servio_snapshots", "servio_flowlike", "prefect")
STAGES = (
    "servio_ingest",
    "servio_snapshots",
    "floor_polars",
    "floor_duckdb",
    "peer",
    "servio_flowlike",
    "prefect",
)


# ---------------------------------------------------------------------------------------
# scale, paths, machine


def reference_time() -> dt.datetime:
    """The ingestion time every stage of one invocation validates against. Rules such as
    "not after the ingestion time + 1 day" would otherwise judge rows near that bound
    differently in stages that start minutes apart, and servio and the peer would disagree
    for a reason that is not a difference in the computation."""
    pinned = os.environ.get(REFERENCE_TIME_ENV)
    return dt.datetime.fromisoformat(pinned) if pinned else dt.datetime.now(dt.UTC)


def parse_scale(label: str) -> int:
    """'20k' → 20 000, '1M' → 1 000 000, '100M', or a plain number."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", label.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"scale must look like 100k, 1M or 10M, got {label!r}")
    factor = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return int(float(match.group(1)) * factor)


class Paths:
    """Everything one scale writes under the work dir."""

    def __init__(self, workdir: Path, scale: str) -> None:
        self.base = workdir / scale
        self.raw = self.base / "raw"
        self.curated = self.base / "curated-servio"
        self.curated_prefect = self.base / "curated-prefect"
        self.peer = self.base / "peer"
        self.floor = self.base / "floor"
        self.prefect_home = self.base / "prefect-home"
        self.stage_results = self.base / "stages"

    def settings(self, curated: Path | None = None) -> Any:
        from servio.config import Settings, env_overrides

        # e.g. SERVIO_SNAPSHOT_BUCKETS=N bounds the snapshot's memory by a customer bucket
        # (the tables are identical for any N: tests/test_snapshot_buckets.py).
        return Settings(
            **{
                **env_overrides(dict(os.environ)),
                "raw_root": str(self.raw),
                "curated_root": str(curated or self.curated),
            }
        )


def uptime_load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_facts() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    from importlib.metadata import version

    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(memory / 1024**3, 1),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "polars": pl.__version__,
        "duckdb": version("duckdb"),
        "prefect": version("prefect"),
        "load_average_at_start": uptime_load(),
        "code": code_version(),
    }


def code_version() -> str:
    """The commit measured, marked when the working tree had uncommitted changes."""
    try:
        git = ["git", "-C", str(ROOT)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} with uncommitted changes" if dirty else commit


def raw_files(paths: Paths) -> list[Path]:
    return sorted(p for p in paths.raw.rglob("*.csv"))


def raw_bytes(paths: Paths) -> int:
    return sum(p.stat().st_size for p in raw_files(paths))


# ---------------------------------------------------------------------------------------
# stages (each runs in its own subprocess: `run.py --stage NAME`)


def _context(settings: Any, run_id: str) -> Any:
    """A run of the sequence validating against the invocation's pinned ingestion time."""
    from dataclasses import replace

    from servio.steps.context import RunContext

    return replace(RunContext.start(settings, run_id=run_id), started_at=reference_time())


def stage_servio_ingest(paths: Paths) -> dict[str, Any]:
    """The sequence with ingest only (discover, stage each file in turn, publish)."""
    from servio.steps import sequence

    shutil.rmtree(paths.curated, ignore_errors=True)
    ctx = _context(paths.settings(), "bench-ingest")
    timed = sequence.Timed()
    start = time.perf_counter()
    plan = sequence.Plan(snapshot=None, data_docs=False)
    outcome = sequence.run(ctx, plan, timed)
    total = time.perf_counter() - start
    summary = outcome.ingest
    assert summary is not None
    timings = {
        "discover_s": timed.seconds.get("discover", 0.0),
        "read_files_s": timed.seconds.get("read_file", 0.0),
        "check_files_s": timed.seconds.get("check_files", 0.0),
        "stage_files_s": timed.seconds.get("read_file", 0.0)
        + timed.seconds.get("check_files", 0.0),
        "publish_ingest_s": timed.seconds.get("publish_ingest", 0.0),
        "publish_s": ctx.lake.publish_seconds,
        "total_s": total,
    }
    return {
        "timings": timings,
        "files": len(outcome.staged),
        "rows_read": summary.rows_read,
        "rows_valid": summary.rows_valid,
        "rows_quarantined": summary.rows_quarantined,
        "table_rows": summary.table_rows,
    }


def stage_servio_snapshots(paths: Paths) -> dict[str, Any]:
    """The sequence with the snapshot only (the latest date, recomputed)."""
    from servio.steps import sequence

    ctx = _context(paths.settings(), "bench-snapshot")
    start = time.perf_counter()
    plan = sequence.Plan(ingest=None, force_snapshot=True, data_docs=False)
    snap = sequence.run(ctx, plan).snapshot
    assert snap is not None
    timings = {"total_s": time.perf_counter() - start, "publish_s": ctx.lake.publish_seconds}
    timings["transforms_s"] = timings["total_s"] - timings["publish_s"]
    return {
        "timings": timings,
        "as_of_date": str(snap.as_of_date),
        "customers": snap.customers,
        "actions": snap.actions,
    }


def stage_floor_polars(paths: Paths) -> dict[str, Any]:
    out = paths.floor / "polars"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    for i, path in enumerate(raw_files(paths)):
        # infer_schema=False: every column as text, as servio's reader takes it
        pl.scan_csv(path, infer_schema=False).sink_parquet(out / f"{i:04d}.parquet")
    return {"timings": {"total_s": time.perf_counter() - start}}


def stage_floor_duckdb(paths: Paths) -> dict[str, Any]:
    import duckdb

    out = paths.floor / "duckdb"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    con = duckdb.connect()
    start = time.perf_counter()
    for i, path in enumerate(raw_files(paths)):
        con.execute(
            f"COPY (SELECT * FROM read_csv('{path}', all_varchar = true)) "
            f"TO '{out / f'{i:04d}.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
        )
    return {"timings": {"total_s": time.perf_counter() - start}}


def _scalar(con: Any, sql: str) -> Any:
    return con.execute(sql).fetchall()[0][0]


def stage_peer(paths: Paths) -> dict[str, Any]:
    """Raw CSV → curated interactions / survey_responses → the three snapshots, in DuckDB."""
    import duckdb

    from benchmarks import peer_ingest
    from benchmarks.peer_profitability import peer_customer_profitability, peer_customer_segments
    from benchmarks.peer_quality import peer_customer_quality
    from servio.schemas.sources import SOURCES

    settings = paths.settings()
    shutil.rmtree(paths.peer, ignore_errors=True)
    paths.peer.mkdir(parents=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Bounded memory: DuckDB spills joins, aggregates and windows to disk beyond the limit.
    spill = paths.peer / "spill"
    con.execute(f"SET memory_limit = '{PEER_MEMORY_LIMIT}'")
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET preserve_insertion_order = false")
    ingested_at = reference_time()
    counts: dict[str, int] = {}
    peers = {  # the peer's own SQL per source: curated rows and the partition column
        "interactions": (peer_ingest.curated_interactions_sql, "interaction_date"),
        "surveys": (peer_ingest.curated_responses_sql, "submitted_date"),
    }
    for source, spec in SOURCES.items():
        contract, table = spec.contract(settings.catalog), spec.table(settings.catalog).name
        curated_sql, date = peers[source]
        files = [(i + 1, str(p)) for i, p in enumerate(sorted((paths.raw / source).glob("*.csv")))]
        raw = peer_ingest.raw_union(con, files, contract)
        valid = peer_ingest.valid_rows_sql(raw, contract, settings, ingested_at)
        # One statement per source: read, type, judge, keep the latest versions, write.
        con.execute(
            f"COPY ({curated_sql(valid, settings, contract)}) TO '{paths.peer / table}' "
            f"(FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({date}), OVERWRITE_OR_IGNORE)"
        )
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{paths.peer / table}/*/*.parquet', "
            f"hive_partitioning = true, hive_types = {{'{date}': DATE}})"
        )
        counts[f"{source}_curated"] = _scalar(con, f"SELECT count(*) FROM {table}")
    timings["ingest_s"] = time.perf_counter() - start
    mark = time.perf_counter()
    as_of = _scalar(
        con,
        "SELECT greatest((SELECT max(interaction_date) FROM interactions), "
        "(SELECT max(submitted_date) FROM survey_responses))",
    )
    quality = peer_customer_quality(
        con,
        "interactions",
        "survey_responses",
        as_of,
        window_days=settings.window_days,
        band=settings.service_level_band,
        catalog=settings.catalog,
        weights=settings.weights,
    )
    profitability = peer_customer_profitability(
        con, "interactions", "survey_responses", as_of, window_days=settings.window_days
    )
    con.register("peer_quality", quality.to_arrow())
    con.register("peer_profitability", profitability.to_arrow())
    segments = peer_customer_segments(con, "peer_profitability", "peer_quality")
    for name, frame in (
        ("customer_quality", quality),
        ("customer_profitability", profitability),
        ("customer_segments", segments),
    ):
        frame.write_parquet(paths.peer / f"{name}.parquet", compression="zstd")
    timings["snapshots_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - start
    con.close()
    # Removed once the connection is closed: its snapshot queries spill there too (at 10M),
    # and a spill folder removed under them failed the peer ("Cannot open file …").
    shutil.rmtree(spill, ignore_errors=True)
    return {"timings": timings, "as_of_date": str(as_of), "counts": counts}


def stage_servio_flowlike(paths: Paths) -> dict[str, Any]:
    """What `run_pipeline` does, as plain calls in one process: the baseline for Prefect's
    overhead. Files are staged concurrently on as many threads as the flow's default task
    runner has (the per-stage figures above stage them one after another)."""
    from servio.flows.runners import THREADS
    from servio.steps import sequence

    curated = paths.base / "curated-flowlike"
    shutil.rmtree(curated, ignore_errors=True)
    ctx = _context(paths.settings(curated), "bench-flowlike")
    start = time.perf_counter()
    outcome = sequence.run(ctx, sequence.Plan(data_docs=False), sequence.InProcess(THREADS))
    assert outcome.ingest is not None and outcome.snapshot is not None
    return {
        "timings": {"total_s": time.perf_counter() - start},
        "rows_read": outcome.ingest.rows_read,
        "customers": outcome.snapshot.customers,
    }


def stage_prefect(paths: Paths) -> dict[str, Any]:
    """Startup of Prefect's ephemeral server (import + first trivial flow), then the flow."""
    shutil.rmtree(paths.curated_prefect, ignore_errors=True)
    config = paths.base / "servio-prefect.toml"
    config.write_text(
        f'raw_root = "{paths.raw}"\ncurated_root = "{paths.curated_prefect}"\n', encoding="utf-8"
    )
    timings: dict[str, float] = {}
    start = time.perf_counter()
    from prefect import flow

    @flow(name="bench-noop")
    def noop() -> int:
        return 1

    noop()
    timings["startup_s"] = time.perf_counter() - start
    from servio.flows.run import run_pipeline

    mark = time.perf_counter()
    summary = run_pipeline(config_path=str(config), write_html_report=False)
    timings["flow_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - start
    return {
        "timings": timings,
        "rows_read": summary.ingest.rows_read,
        "customers": summary.snapshot.customers,
    }


STAGE_FUNCTIONS: dict[str, Callable[[Paths], dict[str, Any]]] = {
    "servio_ingest": stage_servio_ingest,
    "servio_snapshots": stage_servio_snapshots,
    "floor_polars": stage_floor_polars,
    "floor_duckdb": stage_floor_duckdb,
    "peer": stage_peer,
    "servio_flowlike": stage_servio_flowlike,
    "prefect": stage_prefect,
}


def run_stage_subprocess(name: str, paths: Paths, args: argparse.Namespace) -> dict[str, Any]:
    """Run one stage in a fresh interpreter; its wall time, peak RSS and the load around it."""
    paths.stage_results.mkdir(parents=True, exist_ok=True)
    out = paths.stage_results / f"{name}.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ)
    if name == "prefect":
        shutil.rmtree(paths.prefect_home, ignore_errors=True)
        env["PREFECT_HOME"] = str(paths.prefect_home)
        env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        # the default (20 s) is too short on a loaded machine: startup is measured, not capped
        env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")
    # Peak RSS via /usr/bin/time: a child forked from this process would report at least this
    # process's RSS (Linux keeps the pre-exec high-water mark); time's own child starts small.
    rss_file = paths.stage_results / f"{name}.rss"
    timer = (
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file)] if Path("/usr/bin/time").exists() else []
    )
    command = [
        *timer,
        sys.executable,
        str(Path(__file__).resolve()),
        "--stage",
        name,
        "--scale",
        args.scale,
        "--workdir",
        str(args.workdir),
        "--stage-output",
        str(out),
    ]
    # Write back what earlier stages left in the page cache first: otherwise a stage pays for
    # the previous stage's writes (measured: the same flow 182 s right after one stage, 207 s
    # right after another; the "Prefect overhead" was mostly this order effect).
    os.sync()
    time.sleep(args.settle)
    load_before = uptime_load()
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        print(f"  {name}: FAILED (exit code {process.returncode})", flush=True)
        return {"failed": True, "exit_code": process.returncode, "load_after": uptime_load()}
    result: dict[str, Any] = json.loads(out.read_text())
    result["process_wall_s"] = wall
    kib = int(rss_file.read_text().split()[-1]) if timer else usage.ru_maxrss
    result["peak_rss_bytes"] = kib * 1024  # Linux reports kilobytes
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    result["load_before"] = load_before
    result["ingested_at"] = env[REFERENCE_TIME_ENV]  # the time its rules were judged against
    result["load_after"] = uptime_load()
    (paths.stage_results / f"{name}.result.json").write_text(json.dumps(result, indent=2))
    print(
        f"  {name}: {result['timings']['total_s']:.2f} s, "
        f"peak RSS {result['peak_rss_bytes'] / 1024**2:.0f} MiB, load {result['load_after']}",
        flush=True,
    )
    return result


# ---------------------------------------------------------------------------------------
# generation


def ensure_raw(paths: Paths, rows: int) -> dict[str, Any]:
    """Generate the raw exports once per scale; later runs reuse them (same options, same bytes)."""
    from servio.tools.generate import GenerateOptions, generate

    marker = paths.base / "generated.json"
    if marker.exists():
        return dict(json.loads(marker.read_text()), reused=True)
    shutil.rmtree(paths.raw, ignore_errors=True)
    options = GenerateOptions(
        customers=max(1, rows // 10),
        interactions_per_customer=10.0,
        days=365,
        survey_rate=0.1,
        formats=("csv",),
    )
    load = uptime_load()
    report = generate(paths.raw, options)
    facts = {
        "interaction_rows": report.interaction_rows,
        "survey_rows": report.survey_rows,
        "customers": options.customers,
        "files": len(raw_files(paths)),
        "raw_bytes": raw_bytes(paths),
        "seconds": report.seconds,
        "load_before": load,
    }
    marker.write_text(json.dumps(facts, indent=2))
    return dict(facts, reused=False)


# ---------------------------------------------------------------------------------------
# comparison of servio's tables with the peer's


def _read_hive(path: Path) -> pl.DataFrame:
    """The peer's Hive-partitioned output (plain Parquet, written once)."""
    return pl.read_parquet(path / "**" / "*.parquet", hive_partitioning=True)


def _read_servio(path: Path) -> pl.DataFrame:
    """A servio table: a Delta table, read through its log (a glob would also read files
    superseded by later publications until vacuum)."""
    return pl.read_delta(str(path))


def compare_frames(
    name: str, ours: pl.DataFrame, peer: pl.DataFrame, key: list[str], columns: list[str]
) -> dict[str, Any]:
    """Row counts, key sets and every column: floats within 1e-9 (relative above 1), the rest
    exactly (money is Decimal: exact)."""
    result: dict[str, Any] = {"table": name, "rows_servio": ours.height, "rows_peer": peer.height}
    ours = ours.select(*key, *columns)
    peer = peer.select(*key, *columns)
    only_ours = ours.join(peer, on=key, how="anti").height
    only_peer = peer.join(ours, on=key, how="anti").height
    result["keys_only_servio"] = only_ours
    result["keys_only_peer"] = only_peer
    joined = ours.join(peer, on=key, how="inner", suffix="__peer")
    differing: dict[str, dict[str, Any]] = {}
    for column in columns:
        a, b = pl.col(column), pl.col(f"{column}__peer")
        dtype = ours.schema[column]
        if dtype.is_float():
            tolerance = FLOAT_TOLERANCE * pl.max_horizontal(pl.lit(1.0), a.abs())
            same = (a.is_null() & b.is_null()) | (
                a.is_not_null() & b.is_not_null() & ((a - b).abs() <= tolerance)
            )
        else:
            if peer.schema[column] != dtype:
                b = b.cast(dtype)
            same = a.eq_missing(b)
        bad = joined.filter(~same)
        if bad.height:
            example = bad.select(*key, column, f"{column}__peer").head(1).to_dicts()[0]
            differing[column] = {
                "rows": bad.height,
                "example": {k: str(v) for k, v in example.items()},
            }
    result["differing_columns"] = differing
    result["equal"] = not differing and only_ours == 0 and only_peer == 0
    return result


def compare(paths: Paths) -> dict[str, Any]:
    from servio.schemas.snapshot_tables import CUSTOMER_PROFITABILITY, CUSTOMER_SEGMENTS

    settings = paths.settings()
    catalog = settings.catalog
    tables = []
    interactions_columns = [
        "customer_id", "channel", "started_at", "interaction_date", "handle_seconds",
        "queue_seconds", "is_resolved", "reason", "revenue", "margin", "cost_to_serve",
        "currency", "agent_id", "updated_at",
    ]  # fmt: skip
    ours = _read_servio(paths.curated / "interactions")
    peer = _read_hive(paths.peer / "interactions").with_columns(
        pl.col("started_at", "updated_at").dt.replace_time_zone("UTC")
    )
    tables.append(
        compare_frames("interactions", ours, peer, ["interaction_id"], interactions_columns)
    )
    response_columns = [
        "customer_id", "interaction_id", "submitted_at", "submitted_date",
        *catalog.answer_columns, "nps", "csat", "ces",
    ]  # fmt: skip
    ours = _read_servio(paths.curated / "survey_responses")
    peer = _read_hive(paths.peer / "survey_responses").with_columns(
        pl.col("submitted_at").dt.replace_time_zone("UTC")
    )
    tables.append(compare_frames("survey_responses", ours, peer, ["response_id"], response_columns))
    quality_table = "customer_quality"
    for name in (quality_table, CUSTOMER_PROFITABILITY.name, CUSTOMER_SEGMENTS.name):
        ours = _read_servio(paths.curated / name)
        peer = pl.read_parquet(paths.peer / f"{name}.parquet")
        columns = [c for c in peer.columns if c not in ("as_of_date", "customer_id")]
        tables.append(compare_frames(name, ours, peer, ["as_of_date", "customer_id"], columns))
    return {"valid": all(t["equal"] for t in tables), "tables": tables}


# ---------------------------------------------------------------------------------------
# report


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else float("nan")


def summarise(
    label: str,
    rows: int,
    facts: dict[str, Any],
    generated: dict[str, Any],
    stages: dict[str, dict[str, Any]],
    comparison: dict[str, Any],
) -> dict[str, Any]:
    mb = generated["raw_bytes"] / 1e6
    total_rows = generated["interaction_rows"] + generated["survey_rows"]
    ingest = stages["servio_ingest"]
    snaps = stages["servio_snapshots"]
    peer = stages.get("peer")
    publish_s = ingest["timings"].get("publish_s", 0.0) + snaps["timings"].get("publish_s", 0.0)
    rows_table = []

    def row(stage: str, seconds: float, rss: int | None, load: list[float] | None) -> None:
        rows_table.append(
            {
                "stage": stage,
                "wall_s": round(seconds, 3),
                "rows_per_s": round(_rate(total_rows, seconds)),
                "mb_per_s": round(mb / seconds, 1) if seconds > 0 else None,
                "peak_rss_mib": round(rss / 1024**2) if rss else None,
                "load_after": load,
            }
        )

    ingest_s = ingest["timings"]["total_s"]
    snap_s = snaps["timings"]["total_s"]
    row(
        "servio ingest (discover+stage+publish_ingest)",
        ingest_s,
        ingest["peak_rss_bytes"],
        ingest["load_after"],
    )
    row("  of which staging (all files)", ingest["timings"]["stage_files_s"], None, None)
    if "read_files_s" in ingest["timings"]:
        row("    read_file (read, standardise)", ingest["timings"]["read_files_s"], None, None)
        row(
            "    check_files (GX per source, quarantine, curate)",
            ingest["timings"]["check_files_s"],
            None,
            None,
        )
    row("  of which publish_ingest", ingest["timings"]["publish_ingest_s"], None, None)
    row("servio snapshots (build_snapshots)", snap_s, snaps["peak_rss_bytes"], snaps["load_after"])
    row("  of which transforms", snaps["timings"]["transforms_s"], None, None)
    row("servio publish (Lake.publish, ingest+snapshot)", publish_s, None, None)
    row(
        "servio end-to-end (ingest+snapshots)",
        ingest_s + snap_s,
        max(ingest["peak_rss_bytes"], snaps["peak_rss_bytes"]),
        None,
    )
    ratios: dict[str, Any] = {}
    for name, stage in (
        ("I/O floor: Polars scan_csv→sink_parquet", "floor_polars"),
        ("I/O floor: DuckDB COPY→parquet", "floor_duckdb"),
    ):
        if stage in stages:
            s = stages[stage]
            row(name, s["timings"]["total_s"], s["peak_rss_bytes"], s["load_after"])
            ratios[f"servio_ingest_over_{stage}"] = ingest_s / s["timings"]["total_s"]
    if peer is not None:
        row(
            "DuckDB peer end-to-end",
            peer["timings"]["total_s"],
            peer["peak_rss_bytes"],
            peer["load_after"],
        )
        row(
            "  peer ingest (parse+standardise+validate+dedupe+write)",
            peer["timings"]["ingest_s"],
            None,
            None,
        )
        row("  peer snapshots", peer["timings"]["snapshots_s"], None, None)
        ratios["servio_end_to_end_over_peer"] = (ingest_s + snap_s) / peer["timings"]["total_s"]
        ratios["servio_ingest_over_peer_ingest"] = ingest_s / peer["timings"]["ingest_s"]
        ratios["servio_snapshots_over_peer_snapshots"] = snap_s / peer["timings"]["snapshots_s"]
    prefect = stages.get("prefect")
    if prefect and prefect.get("failed"):
        prefect = None
    flowlike = stages.get("servio_flowlike")
    if flowlike and not flowlike.get("failed"):
        row(
            "servio plain calls, flow-like (concurrent staging, one process)",
            flowlike["timings"]["total_s"],
            flowlike["peak_rss_bytes"],
            flowlike["load_after"],
        )
    if prefect:
        plain = (
            flowlike["timings"]["total_s"]
            if flowlike and not flowlike.get("failed")
            else ingest_s + snap_s
        )
        flow_s = prefect["timings"]["flow_s"]
        row(
            "Prefect run_pipeline flow (without startup)",
            flow_s,
            prefect["peak_rss_bytes"],
            prefect["load_after"],
        )
        row(
            "Prefect startup (import + ephemeral server + first flow)",
            prefect["timings"]["startup_s"],
            None,
            None,
        )
        ratios["prefect_overhead_without_startup"] = flow_s / plain - 1
        ratios["prefect_overhead_with_startup"] = (
            flow_s + prefect["timings"]["startup_s"]
        ) / plain - 1
    floor_duckdb = stages.get("floor_duckdb")
    if peer is not None and floor_duckdb is not None:
        ratios["peer_over_floor_duckdb"] = (
            peer["timings"]["ingest_s"] / floor_duckdb["timings"]["total_s"]
        )
    goals: dict[str, bool] = {}
    # issue #20: ≤ 2× the Polars floor at 10M and above, ≤ 3× below (fixed costs weigh more)
    floor_goal = GOAL_INGEST_OVER_FLOOR_LARGE if rows >= 10_000_000 else GOAL_INGEST_OVER_FLOOR
    if "servio_ingest_over_floor_polars" in ratios:
        goals[f"ingest_le_{floor_goal:g}x_polars_floor"] = (
            ratios["servio_ingest_over_floor_polars"] <= floor_goal
        )
    if "servio_end_to_end_over_peer" in ratios:
        goals["end_to_end_le_0.7x_peer"] = (
            ratios["servio_end_to_end_over_peer"] <= GOAL_END_TO_END_OVER_PEER
        )
    if "peer_over_floor_duckdb" in ratios:
        goals["peer_ingest_le_2x_duckdb_copy"] = ratios["peer_over_floor_duckdb"] <= 2
    # servio's own processes; the floors and the peer are not servio.
    goals["peak_rss_le_4GiB"] = (
        max(s.get("peak_rss_bytes", 0) for n, s in stages.items() if n in SERVIO_STAGES)
        <= GOAL_RSS_BYTES
    )
    if prefect:
        goals["prefect_overhead_le_10pct"] = (
            ratios["prefect_overhead_without_startup"] <= GOAL_PREFECT_OVERHEAD
        )
    return {
        "date": dt.date.today().isoformat(),
        "scale": label,
        "scale_rows": rows,
        "machine": facts,
        "input": generated,
        "stages": stages,
        "table": rows_table,
        "ratios": ratios,
        "goals": goals,
        "comparison": comparison,
        "valid": comparison["valid"],
        "load_average_at_end": uptime_load(),
    }


def markdown(result: dict[str, Any]) -> str:
    m, g = result["machine"], result["input"]
    lines = [
        f"# servio benchmark {result['scale']} — {result['date']}",
        "",
        (
            "**NOT COMPARED**: only servio's stages ran (`--servio-only`)."
            if result["valid"] is None
            else f"**{'VALID' if result['valid'] else 'INVALID'}**: servio and the DuckDB peer "
            + ("agree on every compared table." if result["valid"] else "differ (see below).")
        ),
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB; Python "
        f"{m['python']}, Polars {m['polars']}, DuckDB {m['duckdb']}, Prefect {m['prefect']}; "
        f"servio at {m.get('code', 'unknown')}. "
        f"Load average at start {m['load_average_at_start']}, at end "
        f"{result['load_average_at_end']}; each stage's own load is in its row.",
        "",
        *(
            [f"Stages reused from an earlier invocation at this scale: {', '.join(reused)}.", ""]
            if (reused := [n for n, s in result.get("stages", {}).items() if s.get("reused")])
            else []
        ),
        f"Input: {g['interaction_rows']:,} interaction rows + {g['survey_rows']:,} survey rows, "
        f"{g['customers']:,} customers, {g['files']} CSV files, {g['raw_bytes'] / 1e6:.0f} MB "
        "(rows/s and MB/s below are over all rows and bytes of both sources).",
        "",
        "| stage | wall s | rows/s | MB/s | peak RSS MiB | load after (1/5/15 min) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in result["table"]:
        lines.append(
            f"| {r['stage']} | {r['wall_s']:.2f} | {r['rows_per_s']:,} | {r['mb_per_s']} | "
            f"{r['peak_rss_mib'] or ''} | {r['load_after'] or ''} |"
        )
    lines += ["", "| ratio | value |", "|---|---:|"]
    for name, value in result["ratios"].items():
        shown = f"{value:+.1%}" if "overhead" in name else f"{value:.2f}×"
        lines.append(f"| {name} | {shown} |")
    lines += ["", "| goal | met |", "|---|---|"]
    lines += [f"| {name} | {'yes' if ok else 'no'} |" for name, ok in result["goals"].items()]
    if not result["comparison"]["tables"]:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "## Comparison with the peer",
        "",
        "| table | rows servio | rows peer | keys only servio | keys only peer | differing columns |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for t in result["comparison"]["tables"]:
        diff = ", ".join(f"{c} ({d['rows']})" for c, d in t["differing_columns"].items()) or "—"
        lines.append(
            f"| {t['table']} | {t['rows_servio']:,} | {t['rows_peer']:,} | "
            f"{t['keys_only_servio']} | {t['keys_only_peer']} | {diff} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# main


def _pin_reference_time(paths: Paths, reused: list[str]) -> None:
    """One ingestion time for the invocation: that of the reused stages, if any (a stage
    judged against another time could disagree with the peer near the rules' bounds)."""
    times = set()
    for name in reused:
        recorded = paths.stage_results / f"{name}.result.json"
        if recorded.exists():
            pinned = json.loads(recorded.read_text()).get("ingested_at")
            if pinned is None:
                raise SystemExit(f"{recorded} does not record its ingestion time: rerun {name}")
            times.add(pinned)
    if len(times) > 1:
        raise SystemExit(f"reused stages were run against different ingestion times: {times}")
    if times:
        [pinned] = times
        if os.environ.get(REFERENCE_TIME_ENV, pinned) != pinned:
            raise SystemExit(f"{REFERENCE_TIME_ENV} differs from the reused stages' {pinned}")
        os.environ[REFERENCE_TIME_ENV] = pinned
    os.environ.setdefault(REFERENCE_TIME_ENV, dt.datetime.now(dt.UTC).isoformat())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", default="1M", help="interactions: 100k, 1M, 10M, 100M …")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-prefect", action="store_true", help="skip the Prefect flow stage")
    parser.add_argument(
        "--servio-only",
        action="store_true",
        help="run servio's ingest and snapshot stages only (no floor, peer, Prefect, comparison)",
    )
    parser.add_argument(
        "--reuse-stages",
        nargs="*",
        choices=STAGES,
        default=[],
        help="reuse these stages' recorded results from an earlier run at the same scale",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        help="seconds to wait after the page cache is written back, before each stage",
    )
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--stage-output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rows = parse_scale(args.scale)
    paths = Paths(args.workdir.resolve(), args.scale)

    if args.stage:  # inside a stage subprocess
        result = STAGE_FUNCTIONS[args.stage](paths)
        assert args.stage_output is not None
        args.stage_output.write_text(json.dumps(result, indent=2, default=str))
        return 0

    _pin_reference_time(paths, args.reuse_stages)
    facts = machine_facts()
    print(f"servio benchmark at {args.scale} ({rows:,} interactions), load {uptime_load()}")
    generated = ensure_raw(paths, rows)
    print(f"  input: {generated['files']} files, {generated['raw_bytes'] / 1e6:.0f} MB", flush=True)
    stages: dict[str, dict[str, Any]] = {}
    for name in STAGES:
        if name in ("prefect", "servio_flowlike") and args.no_prefect:
            continue
        if args.servio_only and name not in ("servio_ingest", "servio_snapshots"):
            continue
        recorded = paths.stage_results / f"{name}.result.json"
        if name in args.reuse_stages and recorded.exists():
            stages[name] = dict(json.loads(recorded.read_text()), reused=True)
            print(f"  {name}: reused {recorded}", flush=True)
            continue
        stages[name] = run_stage_subprocess(name, paths, args)
    failed = [name for name, stage in stages.items() if stage.get("failed")]
    if any(name not in ("prefect", "servio_flowlike") for name in failed):
        raise SystemExit(f"stage(s) failed: {', '.join(failed)}")
    comparison = {"valid": None, "tables": []} if args.servio_only else compare(paths)
    result = summarise(args.scale, rows, facts, generated, stages, comparison)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = args.results_dir / f"{result['date']}-{args.scale}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0 if result["valid"] in (True, None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
