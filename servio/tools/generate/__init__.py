"""Seeded sample exports for servio: a landing zone of interaction and survey exports shaped like
a real CRM's (SPEC §1), with deliberate defects and a ground-truth manifest to check servio against.

Everything bulk is vectorised (numpy draws, Polars strings); only the per-kind defect overrides are
expressions built in Python. Same options → byte-identical files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from servio.schemas.catalog import load_catalog
from servio.tools.generate.business import _contacts, _customers
from servio.tools.generate.defects import Defect
from servio.tools.generate.files import ExportFile, _render, _write
from servio.tools.generate.interactions import _interactions
from servio.tools.generate.options import (
    FORMATS,
    MANIFEST_NAME,
    WRITERS,
    GenerateOptions,
    GenerateReport,
)
from servio.tools.generate.plan import SourcePlan
from servio.tools.generate.surveys import _surveys

# ---------------------------------------------------------------------------------------------
# Entry point


def generate(out_dir: Path, options: GenerateOptions) -> GenerateReport:
    """Write a seeded landing zone under out_dir (interactions/, surveys/) and its manifest."""
    started = time.perf_counter()
    options.check()
    out_dir = Path(out_dir)
    _refuse_foreign_files(out_dir, options)
    catalog = load_catalog()
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(options.seed).spawn(4)]
    people = _customers(rngs[0], options.customers)
    contacts = _contacts(rngs[1], people, options)

    def export(
        plan: SourcePlan, spec: ExportFile, build: Callable[[], pl.DataFrame]
    ) -> dict[str, Any]:
        rows = build()
        _write(
            _render(rows, spec, plan.timestamps, plan.booleans, plan.defects),
            out_dir / spec.path,
            spec,
        )
        return _describe(spec, rows, plan.defects)

    # Files are built and written two at a time (most of a writer's work is single-threaded),
    # and the interaction files are written while the surveys are being drawn.
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        interactions = _interactions(rngs[2], people, contacts, options)
        pending = [
            pool.submit(export, interactions, spec, build)
            for spec, count, build in interactions.files
            if count > 0
        ]
        surveys = _surveys(rngs[3], people, contacts, interactions, catalog, options)
        pending += [
            pool.submit(export, surveys, spec, build)
            for spec, count, build in surveys.files
            if count > 0
        ]
        file_notes = [job.result() for job in pending]

    written = [out_dir / note["path"] for note in file_notes]
    report = GenerateReport(
        files=[*written, out_dir / MANIFEST_NAME],
        interaction_rows=interactions.rows,
        survey_rows=surveys.rows,
        valid_interaction_ids=interactions.counts["valid_ids"],
        valid_response_ids=surveys.counts["valid_ids"],
        bad_interaction_rows=interactions.counts["bad_rows"],
        bad_survey_rows=surveys.counts["bad_rows"],
        seconds=0.0,
    )
    manifest = _manifest(options, report, interactions, surveys, file_notes)
    (out_dir / MANIFEST_NAME).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return replace(report, seconds=round(time.perf_counter() - started, 3))


def _refuse_foreign_files(out_dir: Path, options: GenerateOptions) -> None:
    """Never mix with other exports: their ids would collide with the generated ones.

    Re-running the same options over its own output is allowed (it rewrites the same bytes).
    """
    present = {
        p.relative_to(out_dir).as_posix()
        for source in ("interactions", "surveys")
        if (out_dir / source).is_dir()
        for p in (out_dir / source).iterdir()
        if not p.name.startswith(".")
    }
    if not present:
        return
    manifest_path = out_dir / MANIFEST_NAME
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        ours = {entry["path"] for entry in manifest.get("files", [])}
        if manifest.get("options") == _options_json(options) and present <= ours:
            return
    raise FileExistsError(
        f"{out_dir} already holds exports ({sorted(present)[0]}, …) that these options would not "
        "write; generate into an empty directory"
    )


def _options_json(options: GenerateOptions) -> dict[str, Any]:
    return {
        **asdict(options),
        "end_date": options.end_date.isoformat(),
        "formats": list(options.formats),
    }


def _describe(spec: ExportFile, rows: pl.DataFrame, defects: Sequence[Defect]) -> dict[str, Any]:
    kinds = rows.filter(pl.col("_defect") >= 0).group_by("_defect").len().sort("_defect")
    return {
        "path": spec.path,
        "source": spec.source,
        "format": spec.fmt,
        "rows": rows.height,
        "bad_rows": int((rows["_defect"] >= 0).sum()),
        "columns": list(spec.columns) + [name for name, _ in spec.extra],
        "bom": spec.bom,
        "messy_header": spec.messy_header,
        "defects": {defects[int(k)].name: int(c) for k, c in kinds.iter_rows()},
    }


def _manifest(
    options: GenerateOptions,
    report: GenerateReport,
    interactions: SourcePlan,
    surveys: SourcePlan,
    files: list[dict[str, Any]],
) -> dict[str, Any]:
    numbers = {k: v for k, v in asdict(report).items() if k not in ("files", "seconds")}
    return {
        "generator": "servio.tools.generate",
        "options": _options_json(options),
        "report": numbers,
        "ground_truth": {
            "duplicate_interaction_rows": interactions.counts["duplicate_rows"],
            "reexported_interaction_rows": interactions.counts["reexport_rows"],
            "duplicate_survey_rows": surveys.counts["duplicate_rows"],
            "customers_with_valid_interactions": interactions.counts["customers"],
            "revenue_total": _money(interactions.revenue_cents),
            "naive_timestamps": "UTC (servio's default source_timezone)",
        },
        "defects": {
            "interactions": [_defect_note(d) for d in interactions.defects],
            "surveys": [_defect_note(d) for d in surveys.defects],
        },
        "files": files,
    }


def _defect_note(defect: Defect) -> dict[str, str]:
    return {"name": defect.name, "reason": defect.reason, "detail": defect.detail}


def _money(cents: int) -> str:
    """Exact decimal text of an amount in cents."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def summary(report: GenerateReport) -> str:
    """One paragraph for the CLI."""
    return (
        f"{len(report.files)} files, {report.interaction_rows:,} interaction rows "
        f"({report.valid_interaction_ids:,} valid ids, {report.bad_interaction_rows:,} bad), "
        f"{report.survey_rows:,} survey rows ({report.valid_response_ids:,} valid ids, "
        f"{report.bad_survey_rows:,} bad) in {report.seconds:.1f} s"
    )


__all__ = ["FORMATS", "MANIFEST_NAME", "GenerateOptions", "GenerateReport", "generate", "summary"]
