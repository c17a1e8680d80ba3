"""Shared helpers for the fault tests: a small two-batch landing zone, subprocess runs that
can be killed, and the checks every kill must pass (readable tables, ledger once, raw intact)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import IO

import polars as pl
import pyarrow.parquet as pq
from polars.testing import assert_frame_equal

from servio.config import load_settings
from servio.lake.lake import Lake
from servio.schemas.tables import INGEST_LEDGER, INTERACTIONS, curated_tables
from servio.tools.generate import GenerateOptions, generate
from servio.transforms.ledger import is_remembered

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
SERVIO = str(Path(PYTHON).with_name("servio"))
RUN_SPECIFIC = ("run_id", "ingested_at", "quarantined_at")


def make_exports(target: Path) -> tuple[list[Path], list[Path]]:
    """A small messy landing zone split in two batches: the first export of each source,
    then the rest (later periods and a re-export that supersedes rows)."""
    generate(
        target,
        GenerateOptions(
            customers=80,
            days=20,
            seed=11,
            messiness=0.05,
            end_date=date(2026, 11, 20),
            formats=("csv", "jsonl.gz", "parquet"),
        ),
    )
    files = sorted(p for p in target.rglob("*") if p.is_file() and not p.name.startswith("_"))
    first = [p for p in files if "_001_" in p.name]
    return first, [p for p in files if p not in first]


def new_lake(base: Path, raw_files: list[Path], raw_source: Path, curated: Path | None) -> Path:
    """A lake folder with the given raw files and, optionally, a copy of a curated tree."""
    base.mkdir(parents=True, exist_ok=True)
    for path in raw_files:
        target = base / "raw" / path.relative_to(raw_source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    if curated is not None:
        shutil.copytree(curated, base / "curated")
    (base / "servio.toml").write_text(
        f'raw_root = "{base / "raw"}"\ncurated_root = "{base / "curated"}"\n', encoding="utf-8"
    )
    return base / "servio.toml"


def env(**extra: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("SERVIO_")}
    values |= {
        "GX_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(ROOT),
    }
    return values | extra


def _popen(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start in its own process group, output to files (see `finish`)."""
    files = _output_files()
    proc = subprocess.Popen(command, cwd=cwd, env=env, text=True, start_new_session=True, **files)
    proc.output_files = (files["stdout"], files["stderr"])  # type: ignore[attr-defined]
    return proc


def fast_run(config: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    """`python -m servio.tools.faults` (the run's sequence without Prefect) in its own process
    group."""
    return _popen(
        [PYTHON, "-m", "servio.tools.faults", "--config", str(config), *args],
        cwd=ROOT,
        env=env(**extra),
    )


def rerun(config: Path, rules: bool = False) -> dict[str, int]:
    """The run after a kill, in this process: what `fast_run(config, "--no-rules")` runs
    (the same function, the `required` checks only), or with `rules` what `fast_run(config)`
    runs (the real GX suite), without a process start and imports per rerun (Great
    Expectations' import alone costs ~5 CPU-s a process). A run in another process is no
    different: nothing of the killed run's process survives but what it left on disk."""
    from servio.tools.faults import run_without_prefect
    from servio.validation import RequiredOnlyValidator

    validator = None if rules else RequiredOnlyValidator()
    return run_without_prefect(str(config), validator=validator)


def servio_run(
    config: Path, *args: str, server: bool = False, **extra: str
) -> subprocess.Popen[str]:
    """The real `servio run` (Prefect flow) in its own process group: with an ephemeral
    server of its own, as the README's first command runs it, or with `server` on this test
    process's Prefect server (`PREFECT_API_URL`, as a user with a server runs it; the
    `prefect_harness` fixture starts one per test process), which saves a server start."""
    if server:
        from prefect.settings import PREFECT_API_URL

        extra = {"PREFECT_API_URL": str(PREFECT_API_URL.value()), **extra}
    return _popen(
        [SERVIO, "run", "--config", str(config), *args],
        cwd=config.parent,
        env=env(**extra),
    )


def _output_files() -> dict[str, IO[str]]:
    """Files, not pipes: Prefect's server child would hold a pipe open after a kill."""
    return {"stdout": tempfile.TemporaryFile("w+"), "stderr": tempfile.TemporaryFile("w+")}


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    """Wait for the process, end whatever it left in its group (Prefect's server), and
    return its exit code, stdout and stderr."""
    try:
        proc.wait(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    out, err = proc.output_files  # type: ignore[attr-defined]
    return proc.returncode, _text(out), _text(err)


def _text(handle: IO[str] | None) -> str:
    if handle is None:
        return ""
    handle.seek(0)
    return handle.read()


def kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tables(config: Path) -> dict[str, pl.DataFrame]:
    """Every curated table, run-specific columns dropped, rows in a canonical order."""
    settings = load_settings(str(config))
    lake = Lake(settings.curated_root)
    out = {}
    for name, table in curated_tables(settings.catalog).items():
        frame = lake.scan(table).collect()
        frame = frame.drop([c for c in RUN_SPECIFIC if c in frame.columns])
        if "reason_detail" in frame.columns:  # "… must not be after <ingested_at + 1 day>"
            frame = frame.with_columns(
                pl.col("reason_detail").str.replace_all(r"after [^;]*", "after <run time>")
            )
        out[name] = frame.sort(frame.columns, nulls_last=True)
    return out


def assert_same_tables(config: Path, expected: dict[str, pl.DataFrame]) -> None:
    actual = tables(config)
    assert actual.keys() == expected.keys()
    for name, frame in expected.items():
        assert actual[name].height > 0 or frame.height == 0, name
        try:
            assert_frame_equal(actual[name], frame)
        except AssertionError as exc:
            raise AssertionError(f"table {name} differs from the uninterrupted run: {exc}") from exc


# The SHA-256 of every data file read whole here without error: the same bytes read the same
# (most files are in every test's copy of the same lake, and checked before and after a rerun).
_READABLE: set[str] = set()


def _assert_readable(path: Path) -> None:
    """Read the Parquet file whole: raises on a half-written (or otherwise broken) file."""
    key = hashlib.sha256(path.read_bytes()).hexdigest()
    if key not in _READABLE:
        pq.read_table(path)
        _READABLE.add(key)


def assert_consistent(config: Path, raw_digest: dict[str, str]) -> None:
    """What must hold at any instant, even right after a kill."""
    settings = load_settings(str(config))
    curated, raw = Path(settings.curated_root), Path(settings.raw_root)
    assert digest(raw) == raw_digest, "raw files must never change"
    if not curated.exists():
        return
    for folder in (p for p in curated.iterdir() if p.is_dir() and p.name != "_servio"):
        assert not list(folder.rglob("*.tmp")), folder
        # A table folder holds its Delta log and its data files only.
        for entry in folder.iterdir():
            assert entry.name == "_delta_log" or "=" in entry.name or entry.suffix == ".parquet"
        for path in folder.rglob("*.parquet"):
            _assert_readable(path)
    lake = Lake(curated)
    # Refused and deferred rows are history (retried later); content verdicts happen once.
    ledger = (
        lake.scan(INGEST_LEDGER).filter(is_remembered(pl.col("status"), pl.col("reason"))).collect()
    )
    assert ledger["sha256"].is_unique().all(), "a file is in the ledger twice"
    assert ledger["source_file"].is_unique().all()
    # At the latest publication the tables always agree, even mid-publication.
    pinned = lake.pinned()
    published = set(pinned.scan(INGEST_LEDGER).select("source_seq").collect()["source_seq"])
    pinned_seqs = set(
        pinned.scan(INTERACTIONS).select("source_seq").unique().collect()["source_seq"]
    )
    assert pinned_seqs <= published, "the latest publication has rows without their ledger entry"
    if (curated / "_servio" / "publication.json").exists():
        # Killed while applying a committed publication: the latest version of each table
        # may come from two publications until the next run rolls forward (RELIABILITY.md).
        return
    seqs = set(lake.scan(INTERACTIONS).select("source_seq").unique().collect()["source_seq"])
    assert seqs <= set(ledger["source_seq"]), "rows published without their ledger entry"


def assert_finished(config: Path) -> None:
    control = Path(load_settings(str(config)).curated_root) / "_servio"
    assert not (control / "publication.json").exists()
    assert not (control / "run.lock").exists()
    assert not [p for p in (control / "staging").rglob("*") if p.is_file()]
