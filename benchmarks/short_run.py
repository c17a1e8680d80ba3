"""How long `servio run` takes when there is nothing to do (issue #20: ≤ 2 s), and how soon
it prints its first line (issue #21: within a second).

Generates a sample landing zone (default 2,000 customers, 120 days: the README's first
command), runs `servio run` once to ingest it (the Prefect flow; not timed), then runs
`servio run` again `--repeat` times in fresh processes, as a scheduler would, and times
each: wall seconds to the first line of output and to the exit. Also times one `servio run
--json` and, for reference, `python -c "import servio.cli"` and a bare interpreter.

Writes benchmarks/results/<date>-short-run.{json,md} (with the commit measured and the
machine's load average).

Run:  .venv/bin/python -m benchmarks.short_run [--customers 2000] [--repeat 7] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.run import code_version

ROOT = Path(__file__).resolve().parents[1]
SERVIO = str(Path(sys.executable).with_name("servio"))


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "COLUMNS": "200",
    }


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, object]:
    """Wall seconds to the first line of stdout and to the exit, CPU seconds, exit code."""
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        first_at = time.perf_counter() - started
        rest = proc.stdout.read()  # the same buffered reader: nothing lost after readline
        proc.wait()
        total = time.perf_counter() - started
        errors.seek(0)
        err = errors.read()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "first_line_s": round(first_at, 3),
        "total_s": round(total, 3),
        "cpu_s": round(cpu, 3),  # user + system of the process: what load does not inflate
        "exit_code": proc.returncode,
        "first_line": first.rstrip("\n"),
        "stdout": first + rest,
        "stderr": err,
    }


def _stats(values: list[float]) -> dict[str, object]:
    return {"median": statistics.median(values), "max": max(values), "all": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="keep an ingested --workdir (no ingesting run)"
    )
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="servio-short-run-"))
    env = _env(work)
    reused = args.reuse and (work / "data" / "curated").is_dir()
    if not reused:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        subprocess.run(
            [SERVIO, "generate", "--customers", str(args.customers)],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )
    setup = timed([SERVIO, "run"], work, env)  # ingests (or, reused, is one more idle run)
    assert setup["exit_code"] == 0, setup["stdout"] + str(setup["stderr"])
    load_before = os.getloadavg()
    runs = [timed([SERVIO, "run"], work, env) for _ in range(args.repeat)]
    for r in runs:
        assert r["exit_code"] == 0 and "nothing to do" in str(r["stdout"]), r
    as_json = timed([SERVIO, "run", "--json"], work, env)
    doc = json.loads(str(as_json["stdout"]))
    assert doc["changed_lake"] is False, doc
    import_only = timed([sys.executable, "-c", "import servio.cli; print('ok')"], work, env)
    bare = timed([sys.executable, "-c", "print('ok')"], work, env)
    load_after = os.getloadavg()
    totals = [float(str(r["total_s"])) for r in runs]
    firsts = [float(str(r["first_line_s"])) for r in runs]
    cpus = [float(str(r["cpu_s"])) for r in runs]
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": code_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": load_before,
        "load_average_after": load_after,
        "customers": args.customers,
        "reused_workdir": reused,
        "setup_run_s": setup["total_s"],
        "nothing_to_do_total_s": _stats(totals),
        "nothing_to_do_cpu_s": _stats(cpus),
        "first_line_s": _stats(firsts),
        "json_total_s": as_json["total_s"],
        "timings_in_document": doc["timings"],
        "import_servio_cli_s": import_only["total_s"],
        "bare_python_s": bare["total_s"],
        "first_line": runs[0]["first_line"],
    }
    out = ROOT / "benchmarks" / "results" / f"{datetime.now(UTC):%Y-%m-%d}-short-run"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    loads = ", ".join(f"{x:.2f}" for x in load_before)
    md = [
        f"# `servio run` with nothing to do ({result['date']}, commit {result['commit']})",
        "",
        f"{result['machine']}; load average before the timed runs: {loads}; after: "
        + ", ".join(f"{x:.2f}" for x in load_after)
        + ". Other work shared the two cores: wall seconds grow with the load, CPU seconds do"
        " not.",
        "",
        f"Sample: `servio generate --customers {args.customers}` (120 days), "
        + (
            "ingested by an earlier invocation (--reuse); one idle run before the timed ones."
            if reused
            else f"ingested once by `servio run` ({setup['total_s']} s; not part of the goal)."
        ),
        "",
        "| measure | median | max | goal |",
        "|---|---:|---:|---|",
        f"| `servio run`, nothing pending, snapshot unchanged ({args.repeat} fresh processes), "
        f"wall s | {statistics.median(totals):.2f} | {max(totals):.2f} | ≤ 2 s (issue #20) |",
        f"| same, CPU s (user + system) | {statistics.median(cpus):.2f} | {max(cpus):.2f} | |",
        f"| first line of output, wall s | {statistics.median(firsts):.2f} | {max(firsts):.2f} "
        "| ≤ 1 s (issue #21) |",
        f"| `servio run --json` (once), wall s | {as_json['total_s']:.2f} | | |",
        f"| `python -c 'import servio.cli'`, wall s | {import_only['total_s']:.2f} | | reference |",
        f"| bare `python -c`, wall s | {bare['total_s']:.2f} | | reference |",
        "",
        f"Seconds inside the command, from the run results: `{json.dumps(doc['timings'])}`.",
        f"First line: `{result['first_line']}`",
        "",
        "Command: `.venv/bin/python -m benchmarks.short_run "
        f"--customers {args.customers} --repeat {args.repeat}"
        + (" --workdir DIR --reuse`" if reused else "`"),
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
