"""Step 5, the Great Expectations Data Docs: each run keeps its files' results beside the Data
Docs before it publishes (under the lock), and every published run's results are rendered
after — so a run killed after its publish, or whose Data Docs failed (a full disk), has its
pages written by the next run."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from servio import faults
from servio.lake import Lake
from servio.schemas.tables import INGEST_LEDGER
from servio.steps.context import RunContext
from servio.steps.staging import StagedFile
from servio.validation import datadocs
from servio.validation.results import read_result_text

# Folder of the Data Docs where a run keeps its GX results until they are rendered.
PENDING_RESULTS = "pending"


def keep_validation_results(ctx: RunContext, staged: Iterable[StagedFile]) -> None:
    """Copy this run's GX results beside the Data Docs before the run publishes (under the
    lock): a run killed after its publish, or whose Data Docs could not be written (a full
    disk), leaves them for the next run's `build_data_docs`."""
    pending = ctx.lake.data_docs_dir / PENDING_RESULTS / ctx.run_id
    for item in staged:
        if item.validation_path and item.landed.sha256:
            pending.mkdir(parents=True, exist_ok=True)
            partial = pending / f".{item.landed.sha256}.json.partial"
            partial.write_text(read_result_text(item.validation_path), encoding="utf-8")
            partial.replace(pending / f"{item.landed.sha256}.json")


def has_pending_results(lake: Lake) -> bool:
    """Whether some run kept validation results not rendered yet (`build_data_docs` has work)."""
    pending = lake.data_docs_dir / PENDING_RESULTS
    return pending.is_dir() and any(pending.iterdir())


def build_data_docs(ctx: RunContext) -> Path | None:
    """Add the validation results of every published run not yet shown — this run's, and any
    left by a run killed after its publish — to the lake's Great Expectations Data Docs.
    Call under the lock, after `keep_validation_results` and the publish."""
    lake = ctx.lake
    pending = lake.data_docs_dir / PENDING_RESULTS
    if not has_pending_results(lake):
        return None
    published = set(
        lake.scan(INGEST_LEDGER).select("run_id").unique().collect().get_column("run_id")
    )
    runs = sorted(p for p in pending.iterdir() if p.is_dir())
    # Under the lock no other run is between its copy and its publish: a run not in the
    # ledger was killed before its commit, and its files are staged again by a later run.
    for orphan in (r for r in runs if r.name not in published):
        shutil.rmtree(orphan, ignore_errors=True)
    shown = [r for r in runs if r.name in published]
    results = [str(p) for run in shown for p in sorted(run.glob("*.json"))]
    if not results:
        return None
    faults.checkpoint("rendering_data_docs")
    gx_index = datadocs.render(results, lake.data_docs_dir)
    index = datadocs.offline_index(gx_index, lake.data_docs_index)
    for run in shown:  # rendered: kept in data_docs/results from now on
        shutil.rmtree(run, ignore_errors=True)
    return index
