"""The run sequence exists once (`servio.steps.sequence.run`): its steps in their order, the
lock rule (staging outside the lock, everything that writes under it), and every entry point
calling it — checked by running it with a recording executor and by reading the code."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from servio import faults
from servio.schemas.tables import INGEST_LEDGER, INGESTED
from servio.steps import sequence
from servio.steps.check import check_files
from servio.steps.datadocs import build_data_docs
from servio.steps.discover import discover
from servio.steps.publish import publish_ingest
from servio.steps.read import read_file
from servio.steps.snapshot import build_snapshot
from tests.runs import REQUIRED_ONLY, context, run, settings_of
from tests.test_hostile_corpus import land

ROOT = Path(__file__).resolve().parents[1]


class Recording:
    """An executor that runs each step in this thread and writes down its name, and whether
    the lake lock was held at the time."""

    def __init__(self, lock_file: Path) -> None:
        self.lock_file = lock_file
        self.calls: list[tuple[str, bool]] = []

    def call(self, step: Callable[..., Any], *args: Any) -> Any:
        self.calls.append((step.__name__, self.lock_file.exists()))
        return step(*args)

    def map(self, step: Callable[..., Any], items: Sequence[Any], *args: Any) -> Iterator[Any]:
        for item in items:
            self.calls.append((step.__name__, self.lock_file.exists()))
            yield step(*args, item)


def _lake(tmp_path: Path) -> Path:
    return land(tmp_path, [], "seq")  # one clean interactions export


def test_the_steps_run_once_in_order_and_only_writing_holds_the_lock(tmp_path: Path) -> None:
    config = _lake(tmp_path)
    ctx = context(config, REQUIRED_ONLY)
    recording = Recording(Path(ctx.settings.curated_root) / "_servio" / "run.lock")
    outcome = sequence.run(ctx, sequence.EVERYTHING, recording)
    assert recording.calls == [
        ("discover", False),
        ("read_file", False),
        ("check_files", False),
        ("publish_ingest", True),
        ("build_snapshot", True),
        ("build_data_docs", True),
    ]
    assert outcome.locked and outcome.ingest is not None and outcome.ingest.files_ingested == 1
    assert not (Path(ctx.settings.curated_root) / "_servio" / "staging").exists() or not any(
        (Path(ctx.settings.curated_root) / "_servio" / "staging").iterdir()
    )


def test_a_run_with_nothing_to_write_takes_no_lock(tmp_path: Path) -> None:
    config = _lake(tmp_path)
    run(config, REQUIRED_ONLY)
    ctx = context(config, REQUIRED_ONLY)
    recording = Recording(Path(ctx.settings.curated_root) / "_servio" / "run.lock")
    plan = sequence.Plan(ingest=("interactions/clean.csv",), snapshot=None, data_docs=False)
    taken: list[str] = []
    with faults.inject("lock_taken", lambda: taken.append("lock")):
        outcome = sequence.run(ctx, plan, recording)
    assert recording.calls == [("discover", False)]
    assert (outcome.discovered.files, outcome.locked, taken) == (0, False, [])


def test_a_file_another_run_published_while_this_one_staged_is_not_published_twice(
    tmp_path: Path,
) -> None:
    """Staging takes no lock: run B discovers the file, then run A ingests it whole before B
    publishes. Under the lock B decides again and records nothing for it."""
    config = _lake(tmp_path)
    done: list[str] = []

    def another_run_first(**_: Any) -> None:
        if not done:
            done.append("a")
            run(config, REQUIRED_ONLY)

    with faults.inject("discovered", another_run_first):
        outcome = run(config, REQUIRED_ONLY)
    assert done == ["a"] and len(outcome.staged) == 1
    assert outcome.ingest is not None and outcome.ingest.recorded == {}
    ledger = run_ledger(config)
    assert ledger.select("source_file", "status").rows() == [("interactions/clean.csv", INGESTED)]


def run_ledger(config: Path) -> pl.DataFrame:
    from servio.lake import Lake

    return Lake(settings_of(config).curated_root).scan(INGEST_LEDGER).collect()


def test_a_run_that_fails_leaves_no_staging_and_no_lock(tmp_path: Path) -> None:
    config = _lake(tmp_path)
    curated = Path(settings_of(config).curated_root)

    def boom() -> None:
        raise RuntimeError("the snapshot failed")

    with faults.inject("after_ingest_publish", boom), pytest.raises(RuntimeError, match="failed"):
        run(config, REQUIRED_ONLY)
    assert not (curated / "_servio" / "run.lock").exists()
    staging = curated / "_servio" / "staging"
    assert not staging.exists() or not any(staging.iterdir())
    assert run_ledger(config)["status"].to_list() == [INGESTED]  # published before it failed


# ---------------------------------------------------------------------------------------
# reading the code: who calls the sequence, and that nobody else takes the lock


def _calls(path: Path) -> list[tuple[str, str]]:
    """(enclosing function, called name) for every call in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = child.name
            if isinstance(child, ast.Call):
                func = child.func
                called = (
                    func.attr
                    if isinstance(func, ast.Attribute)
                    else func.id
                    if isinstance(func, ast.Name)
                    else ""
                )
                owner = (
                    func.value.id
                    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    else ""
                )
                found.append((function, f"{owner}.{called}" if owner else called))
            visit(child, name)

    visit(tree, "<module>")
    return found


# Every entry point, and the function in it that must run the sequence.
ENTRY_POINTS = {
    "flows/run.py": "run_pipeline",  # servio run
    "flows/ingest_file.py": "ingest_file",  # served: a landed file
    "flows/snapshot.py": "build_snapshot",  # served: curated.updated, the daily cron
    "servio/steps/backfill.py": "snapshot_date",  # backfill in process, and its served flow
    "servio/cli/lake.py": "maintain",  # servio maintain
    "servio/tools/faults.py": "run_without_prefect",  # the kill harness
    "benchmarks/run.py": "stage_servio_ingest",
    "benchmarks/run.py:snapshots": "stage_servio_snapshots",
    "benchmarks/run.py:flowlike": "stage_servio_flowlike",
    "benchmarks/dask_snapshot.py": "run_mode",
}


@pytest.mark.parametrize("where", sorted(ENTRY_POINTS))
def test_every_entry_point_runs_the_sequence(where: str) -> None:
    path = ROOT / where.split(":")[0]
    function = ENTRY_POINTS[where]
    assert "sequence.run" in {c for f, c in _calls(path) if f == function}, (where, function)


def test_the_served_backfill_and_the_cli_backfill_snapshot_through_the_sequence() -> None:
    flows_backfill = (ROOT / "flows" / "backfill.py").read_text()
    assert ")(snapshot_date)" in flows_backfill  # the flow's task is the sequence's snapshot
    steps_backfill = _calls(ROOT / "servio" / "steps" / "backfill.py")
    assert ("snapshot_here", "snapshot_date") in steps_backfill


# What only the sequence (and the lake itself) may do: take the lock, recover, publish, and
# call the steps that write.
WRITES = {"lock", "recover", "discard_staging", "publish", "maintain"}
WRITING_STEPS = {"publish_ingest", "build_snapshot", "build_data_docs", "keep_validation_results"}
ALLOWED = {
    ROOT / "servio" / "steps" / "sequence.py",
    ROOT / "servio" / "steps" / "publish.py",  # lake.publish of the ingest
    ROOT / "servio" / "steps" / "snapshot.py",  # lake.publish of the snapshot
    ROOT / "servio" / "steps" / "maintenance.py",  # lake.maintain
    ROOT / "benchmarks" / "big_file.py",  # stage only: discards its own staging
    # Builds a synthetic lake of its own (responses at scale) to measure the combine step.
    ROOT / "benchmarks" / "snapshot_memory.py",
}


def _production_modules() -> Iterator[Path]:
    for top in ("servio", "flows", "benchmarks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "lake" not in path.relative_to(ROOT).parts[:2]:
                yield path


def test_nothing_else_takes_the_lock_recovers_or_publishes() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {function} calls {called}"
        for path in _production_modules()
        if path not in ALLOWED
        for function, called in _calls(path)
        if (called.split(".")[-1] in WRITES and "." in called) or called in WRITING_STEPS
    ]
    assert offenders == []


def test_the_prefect_tasks_are_the_steps() -> None:
    from servio.flows.tasks import TASKS

    assert set(TASKS) == {
        discover,
        read_file,
        check_files,
        publish_ingest,
        build_snapshot,
        build_data_docs,
        sequence.maintain_lake,
    }
