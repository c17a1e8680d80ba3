"""Served operation against a real Prefect server: latency of one landed file, and a burst.

    .venv/bin/python benchmarks/served.py [--drops 10] [--burst 50] [--workdir benchmarks/work]

Starts `prefect server start` on a free loopback port and `servio serve` against it (its own
PREFECT_HOME and lake under the workdir), then:
1. drops, one at a time, `--drops` small files (a few hundred rows each) and measures
   landed → visible in `interactions` (its `source_file` in the table) and landed → snapshot
   refreshed (the latest date's snapshot fingerprint matches the ledger again);
2. lands `--burst` files at once, samples every 0.25 s how many ingest runs are Running and
   how many child processes `serve` has (its warm processes), counts the ingest and snapshot runs, and times
   landed → all curated and snapshot current; then times `servio run` (in process, the same
   files, a fresh lake) for the ratio;
3. per drop, where the time went, from the server's record of its ingest run: landed → run
   created → Pending (claimed) → Running (the engine started, in the run's process) → the
   flow body's first log → Completed, the run's step timings, and the RSS of `serve` and
   its processes (warm processes must not grow run after run).
Results: benchmarks/results/<date>-served.json and .md, with the machine's load average
(the machine may be shared: rerun on a quiet one to compare).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from servio.flows.warm import RUNS_PER_PROCESS  # noqa: E402
from servio.tools.harness import free_port, land, process_group  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
END = dt.date(2026, 11, 20)
BIN = Path(sys.executable).parent


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Like `wait_until`, but a predicate that raises (a server not up yet) counts as false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(interval)
    return False


def _files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.parent != folder and not p.name.startswith("manifest")
    )


def _in_table(curated: Path, name: str, relative: str) -> bool:
    """Whether `name` has a row of the file. For the ingest ledger: the file's publication
    is visible — its rows are in `interactions` unless a newer version of each supersedes
    it (a generated file can be all superseded rows), as the tables publish together."""
    folder = curated / name
    if not (folder / "_delta_log").exists():
        return False
    found = pl.scan_delta(str(folder)).filter(pl.col("source_file") == relative).head(1)
    return found.collect().height > 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drops", type=int, default=10)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "work" / "served")
    parser.add_argument("--ingest-runs", type=int, default=2)
    parser.add_argument("--drops-budget", type=float, default=1800.0, help="seconds at most")
    parser.add_argument(
        "--runs-per-process", type=int, default=RUNS_PER_PROCESS, help="servio serve's"
    )
    parser.add_argument("--suffix", default="served", help="results file: <date>-<suffix>")
    args = parser.parse_args()

    work: Path = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect-home"),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_LOGGING_LEVEL", None)
    os.environ.update({k: env[k] for k in ("PREFECT_HOME", "PREFECT_API_URL")})
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["GX_ANALYTICS_ENABLED"] = "false"

    from servio.config import load_settings
    from servio.flows.watch import snapshot_behind
    from servio.lake import Lake
    from servio.steps.discover import unsettled
    from servio.tools.generate import GenerateOptions, generate

    # The generator writes ~10 files per data set: several seeds, landed under distinct names.
    small, bursty = work / "small", work / "bursty"
    singles: list[tuple[Path, str]] = []
    for seed in range(31, 60):
        if len(singles) >= args.drops:
            break
        folder = small / str(seed)
        generate(folder, GenerateOptions(customers=60, days=60, seed=seed, end_date=END))
        singles += [(folder, f) for f in _files(folder) if f.startswith("interactions/")]
    singles = singles[: args.drops]
    burst: list[tuple[Path, str]] = []
    for seed in range(61, 120):
        if len(burst) >= args.burst:
            break
        folder = bursty / str(seed)
        generate(folder, GenerateOptions(customers=200, days=60, seed=seed, end_date=END))
        burst += [(folder, f) for f in _files(folder)]
    burst = burst[: args.burst]
    raw, curated = work / "raw", work / "curated"
    raw.mkdir()
    config = work / "servio.toml"
    config.write_text(
        f'raw_root = "{raw}"\ncurated_root = "{curated}"\nserve_ingest_runs = {args.ingest_runs}\n'
    )
    settings = load_settings(config)
    lake = Lake(settings.curated_root)
    result: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "serve_ingest_runs": args.ingest_runs,
    }
    prefect = str(BIN / "prefect")
    server = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with process_group(server, env, work / "server.log", grace=20):
        import httpx

        assert _wait(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 120), (
            "no server"
        )
        serve = [str(BIN / "servio"), "serve", "--config", str(config), "--poll", "0.25"]
        serve += ["--runs-per-process", str(args.runs_per_process)]
        with process_group(serve, env, work / "serve.log", grace=20) as served:
            assert _wait(lambda: "being served" in (work / "serve.log").read_text(), 120)
            # steady state: the warm processes have imported everything (serve says so)
            _wait(lambda: "warm processes ready" in (work / "serve.log").read_text(), 180)
            time.sleep(1)
            # the burst
            from prefect import get_client

            def runs() -> list[Any]:
                with get_client(sync_client=True) as client:
                    return list(client.read_flow_runs(limit=200))

            before = {r.id for r in runs()}
            rss: list[float] = [_rss_mib(served.pid)]
            samples: list[tuple[int, int]] = []
            stop = threading.Event()

            def sample() -> None:
                import psutil

                parent = psutil.Process(served.pid)
                while not stop.is_set():
                    with contextlib.suppress(Exception):
                        running = sum(
                            1
                            for r in runs()
                            if r.name.startswith("ingest ") and r.state and r.state.is_running()
                        )
                        # children of serve: its warm processes (ingest and snapshot)
                        samples.append((running, len(parent.children())))
                    stop.wait(0.25)

            sampler = threading.Thread(target=sample, daemon=True)
            if burst:
                sampler.start()
            started = time.monotonic()
            for folder, relative in burst:
                land(folder, raw, relative, f"b{folder.name}_{Path(relative).name}")
            assert _wait(lambda: not unsettled(settings, lake), 1800, 1), "burst not ingested"
            curated_at = time.monotonic() - started
            assert _wait(lambda: not snapshot_behind(settings, lake), 900, 0.5), "no snapshot"
            settled_at = time.monotonic() - started
            stop.set()
            if burst:
                sampler.join()
            new = [r for r in runs() if r.id not in before]
            rss.append(_rss_mib(served.pid))
            result["burst"] = {
                "files": len(burst),
                "all_curated_s": curated_at,
                "snapshot_current_s": settled_at,
                "ingest_runs": sum(1 for r in new if r.name.startswith("ingest ")),
                "snapshot_runs": sum(1 for r in new if r.name.startswith("snapshot ")),
                "max_running_ingest_runs": max((s[0] for s in samples), default=0),
                "max_run_processes": max((s[1] for s in samples), default=0),  # + snapshot
                "samples": len(samples),
            }
            if burst:
                _write(result, args)
                _reference(burst, work, result)
            else:
                del result["burst"]
            _write(result, args)
            breakdowns: list[dict[str, Any]] = []
            visible: list[float] = []
            refreshed: list[float] = []
            budget = time.monotonic() + args.drops_budget
            for i, (folder, relative) in enumerate(singles):
                if time.monotonic() > budget:
                    print(f"drops cut short after {i}: --drops-budget {args.drops_budget:g}s")
                    break
                landed_at, landed_wall = time.monotonic(), dt.datetime.now(dt.UTC)
                name = land(folder, raw, relative, f"s{folder.name}_{Path(relative).name}")
                assert _wait(lambda n=name: _in_table(curated, "ingest_ledger", n), 180), name
                visible.append(time.monotonic() - landed_at)
                assert _wait(lambda: not snapshot_behind(settings, lake), 180, 0.2), name
                refreshed.append(time.monotonic() - landed_at)
                print(f"drop {i + 1}: visible {visible[-1]:.1f}s, snapshot {refreshed[-1]:.1f}s")
                time.sleep(1)
                breakdowns.append(_breakdown(name, landed_wall, visible[-1]))
                rss.append(_rss_mib(served.pid))
                print(f"  {breakdowns[-1]}; RSS {rss[-1]:.0f} MiB")
            result["drops"] = {
                "files": len(visible),
                "visible_s": visible,
                "visible_p50": statistics.median(visible),
                "visible_p95": _percentile(visible, 0.95),
                "snapshot_s": refreshed,
                "snapshot_p50": statistics.median(refreshed),
                "breakdown": breakdowns,
            }
            result["rss_mib"] = rss
            result["rss_per_process_mib"] = {str(k): v for k, v in PER_PROCESS.items()}
            _write(result, args)
    _write(result, args)


PER_PROCESS: dict[int, list[float]] = {}  # pid → its RSS samples (MiB), children of serve


def _rss_mib(pid: int) -> float:
    """Resident memory of `serve` and every process under it, MiB (and each child's, kept
    in PER_PROCESS: a warm process must not grow run after run)."""
    import psutil

    parent = psutil.Process(pid)
    total = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            rss = process.memory_info().rss / 2**20
            total += rss
            if process.pid != pid:
                PER_PROCESS.setdefault(process.pid, []).append(rss)
    return total


def _breakdown(name: str, landed: dt.datetime, visible_s: float) -> dict[str, Any]:
    """Seconds after landing at which the drop's ingest run (the one named after it) was
    created, claimed (Pending), started (Running: the engine runs in the run's process),
    began its body (its first log of servio's), ended (Completed); and its step timings."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )

    def after(when: dt.datetime | None) -> float | None:
        return round((when - landed).total_seconds(), 2) if when else None

    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"ingest {name}"]))
        )
        if not found:
            return {"run": None, "visible": round(visible_s, 2)}
        run = found[0]
        states = {s.type.value: s.timestamp for s in client.read_flow_run_states(run.id)}
        logs = sorted(
            client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))),
            key=lambda entry: entry.timestamp,
        )
    body = next((e.timestamp for e in logs if e.message.startswith("ingest:")), None)
    steps = next((e.message for e in logs if " file(s) in " in e.message), "")
    return {
        "created": after(run.created),
        "pending": after(states.get("PENDING")),
        "running": after(states.get("RUNNING")),
        "body": after(body),
        "completed": after(states.get("COMPLETED")),
        "visible": round(visible_s, 2),
        "steps": steps.split(" (", 1)[-1].rstrip(")") if steps else "",
    }


def _reference(burst: list[tuple[Path, str]], work: Path, result: dict[str, Any]) -> None:
    """The same burst through `servio run`'s sequence, in process, on a fresh lake."""
    from servio.config import load_settings
    from servio.steps import sequence
    from servio.steps.context import RunContext

    ref_raw, ref_curated = work / "ref-raw", work / "ref-curated"
    for folder, relative in burst:
        land(folder, ref_raw, relative, f"b{folder.name}_{Path(relative).name}")
    ref = load_settings(
        None, overrides={"raw_root": str(ref_raw), "curated_root": str(ref_curated)}
    )
    began = time.monotonic()
    # `servio run` stages on the flow's thread pool: the same number of threads here
    from servio.flows.runners import THREADS

    sequence.run(RunContext.start(ref), sequence.EVERYTHING, sequence.InProcess(THREADS))
    result["burst"]["servio_run_s"] = time.monotonic() - began
    result["burst"]["ratio"] = (
        result["burst"]["snapshot_current_s"] / result["burst"]["servio_run_s"]
    )


def _write(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Results so far (each phase writes them: a long phase cut short keeps the others)."""
    result["load_after"] = os.getloadavg()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / f"{result['date']}-{args.suffix}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    lines = [
        f"# servio served — {result['date']}",
        "",
        f"`.venv/bin/python benchmarks/served.py --drops {args.drops} --burst {args.burst} "
        f"--runs-per-process {args.runs_per_process} --suffix {args.suffix}` on "
        f"{result['cpus']} cores, load average before {result['load_before'][0]:.1f}, after "
        f"{result['load_after'][0]:.1f} (shared machine).",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
    ]
    b = result.get("burst")
    if b:
        lines += [
            f"| burst of {b['files']}: all curated | {b['all_curated_s']:.1f} s | |",
            f"| burst: snapshot current | {b['snapshot_current_s']:.1f} s | |",
            f"| ingest runs for the burst | {b['ingest_runs']} | few |",
            f"| most ingest runs Running at once (sampled {b['samples']}×) | "
            f"{b['max_running_ingest_runs']} | ≤ {args.ingest_runs} |",
            f"| most child processes of serve at once (warm ingest + snapshot, Python's "
            "resource tracker) | "
            f"{b['max_run_processes']} | |",
            f"| snapshot runs for the burst | {b['snapshot_runs']} | ≤ 2 |",
        ]
        if "servio_run_s" in b:
            lines += [
                f"| `servio run` over the same files | {b['servio_run_s']:.1f} s | |",
                f"| ratio served / `servio run` | {b['ratio']:.2f} | ≤ 1.5 |",
            ]
    d = result.get("drops")
    if d:
        lines += [
            f"| one small file landed → published (in the ledger, its rows in `interactions`), "
            f"p50 | {d['visible_p50']:.1f} s | ≤ 5 s |",
            f"| same, p95 ({d['files']} drops) | {d['visible_p95']:.1f} s | ≤ 10 s |",
            f"| landed → snapshot refreshed, p50 | {d['snapshot_p50']:.1f} s | ≤ 15 s |",
        ]
        keys = ("created", "pending", "running", "body", "completed", "visible")
        medians = {
            k: statistics.median(v)
            for k in keys
            if (v := [b[k] for b in d["breakdown"] if b.get(k) is not None])
        }
        lines += [
            "",
            "Where a drop's time goes (median seconds after landing): "
            + ", ".join(f"{k} {v:.1f}" for k, v in medians.items())
            + " — created: the watcher asked for the run; pending: a runner claimed it; "
            "running: the engine started in the run's process; body: the flow's first log; "
            "completed: the run ended; visible: the benchmark saw the rows.",
        ]
    if result.get("rss_mib"):
        r = result["rss_mib"]
        lines += [
            "",
            f"RSS of `serve` and its processes: {r[0]:.0f} MiB before the burst, "
            f"{max(r):.0f} MiB at most, {r[-1]:.0f} MiB at the end ({len(r)} samples).",
        ]
        for pid, samples in result.get("rss_per_process_mib", {}).items():
            if len(samples) >= 3:
                third = max(1, len(samples) // 3)
                lines.append(
                    f"- process {pid}: {samples[0]:.0f} MiB first, "
                    f"{statistics.median(samples[third : 2 * third]):.0f} MiB mid (median), "
                    f"{statistics.median(samples[-third:]):.0f} MiB last third (median), "
                    f"{max(samples):.0f} MiB at most, {len(samples)} samples"
                )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
