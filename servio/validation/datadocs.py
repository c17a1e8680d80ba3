"""Great Expectations Data Docs: every kept file result rendered as GX's static site, and an
offline index of its pages (GX's own index needs scripts from public CDNs)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servio.validation import gx
from servio.validation.results import (
    ValidationResult,
    gx_document,
    read_result_text,
    write_atomically,
)

DOCS_SITE = "servio"


def render(results: Iterable[ValidationResult | Path | str], docs_dir: Path) -> Path:
    """Render validation results as a static GX Data Docs site under `docs_dir`.

    `results` are `ValidationResult`s or JSON files written by `write_gx_result`. Each is also
    kept in `docs_dir/results/`, and the index lists every result kept there, so every file
    validated into the same directory (validating the same file at the same ingestion time
    again replaces its page). Pages are rendered for the given results and for any kept result
    whose page is missing, not again for every kept result: GX's incremental build
    (`resource_identifiers`); rendering all of them cost ~0.25 s per file ever validated, at
    every run, under the lake lock. Returns the path of `index.html`.
    """
    g = gx.load()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    docs_dir = Path(docs_dir).resolve()
    kept_dir = docs_dir / "results"
    kept_dir.mkdir(parents=True, exist_ok=True)
    given = set()
    for result in results:
        if isinstance(result, ValidationResult):
            document = gx_document(result.gx_result)
        else:
            document = read_result_text(result)
        stem = _result_stem(json.loads(document))
        write_atomically(kept_dir / f"{stem}.json", document)
        given.add(stem)
    pages = _pages_by_key(docs_dir)
    index = docs_dir / "index.html"

    with gx.GX_LOCK:
        # A fresh context: its in-memory result store then holds exactly what the site shows.
        context = gx.ephemeral_context(g.gx, ProgressBarsConfig)
        context.add_data_docs_site(DOCS_SITE, _site_config(docs_dir))
        to_render = []
        for path in sorted(kept_dir.glob("*.json")):
            document = json.loads(path.read_text(encoding="utf-8"))
            suite_result = _loadable(document)
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(suite_result.suite_name),
                run_id=suite_result.meta["run_id"],
                batch_identifier=suite_result.batch_id,
            )
            context.validation_results_store.set(key, suite_result)
            if path.stem in given or _page_key(document) not in pages:
                to_render.append(key)
        if to_render or not index.exists():
            # Given no identifiers at all, GX renders every page (a missing index, nothing new).
            context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=to_render or None)
    return index


def _site_config(docs_dir: Path) -> dict[str, Any]:
    return {
        "class_name": "SiteBuilder",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir),
        },
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "show_how_to_buttons": False,
        },
        # By default GX lists runs whose name contains "profiling" in a profiling section only.
        "site_section_builders": {
            "profiling": "None",
            "validations": {"run_name_filter": {"matches_regex": ".*"}},
        },
    }


def _result_stem(document: dict[str, Any]) -> str:
    meta = document["meta"]
    stamp = datetime.fromisoformat(meta["run_id"]["run_time"]).astimezone(UTC)
    return f"{stamp:%Y%m%dT%H%M%S%fZ}__{document['suite_name']}__{meta['batch_id']}"


def _loadable(document: dict[str, Any]) -> Any:
    """A stored suite result back as an `ExpectationSuiteValidationResult`."""
    from great_expectations.core.expectation_validation_result import (
        expectationSuiteValidationResultSchema,
    )

    suite_result = expectationSuiteValidationResultSchema.load(document)
    suite_result.batch_id = suite_result.meta["batch_id"]  # the schema does not keep batch_id
    return suite_result


_INDEX_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>servio validations</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0 2em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.fail { color: #b00020; font-weight: 600; } .pass { color: #1b7f3b; }
</style></head><body>
<h1>Great Expectations validation results</h1>
<p>{{ files|length }} validated file(s): {{ failed_files }} with at least one failed
expectation, {{ files|length - failed_files }} passing every one. This page needs no
internet; each file links to its Great Expectations page.
<a href="{{ gx_index }}">GX Data Docs home</a> (needs internet for its styling and table).</p>
<h2 id="expectations">Per expectation</h2>
<table><thead><tr><th>suite</th><th>expectation</th><th>column</th><th>rule</th>
<th class="n">files passed</th><th class="n">files failed</th>
<th class="n">unexpected values</th></tr></thead><tbody>
{% for e in expectations %}<tr>
<td>{{ e.suite }}</td><td>{{ e.type }}</td><td>{{ e.column }}</td><td>{{ e.rule }}</td>
<td class="n pass">{{ e.passed }}</td>
<td class="n {{ 'fail' if e.failed else '' }}">{{ e.failed }}</td>
<td class="n">{{ "{:,}".format(e.unexpected) }}</td></tr>
{% endfor %}</tbody></table>
<h2 id="files">Per file (newest runs last)</h2>
<table><thead><tr><th>file</th><th>suite</th><th>validated at (UTC)</th><th>result</th>
<th class="n">expectations passed</th><th class="n">failed</th>
<th class="n">unexpected values</th></tr></thead><tbody>
{% for f in files %}<tr>
<td>{% if f.href %}<a href="{{ f.href }}">{{ f.label }}</a>{% else %}{{ f.label }}{% endif %}</td>
<td>{{ f.suite }}</td><td>{{ f.time }}</td>
<td class="{{ 'pass' if f.success else 'fail' }}">{{ 'pass' if f.success else 'fail' }}</td>
<td class="n">{{ f.passed }}</td><td class="n">{{ f.failed }}</td>
<td class="n">{{ "{:,}".format(f.unexpected) }}</td></tr>
{% endfor %}</tbody></table>
</body></html>
"""


def offline_index(gx_index: Path, target: Path) -> Path:
    """An index of every kept validation result that works offline (GX's own index draws its
    table with scripts from public CDNs): pass/fail counts per file and per expectation, and
    a link to each file's GX page; `target` is the lake's `data_docs_index`."""
    import jinja2

    docs = gx_index.parent
    files, expectations = index_rows(docs)
    pages = _pages_by_key(docs)
    for row in files:
        page = pages.get((row["run_name"], row["batch_id"], row["stamp"]))
        row["href"] = page.relative_to(docs).as_posix() if page else None
    page_text = (
        jinja2.Environment(autoescape=True)
        .from_string(_INDEX_TEMPLATE)
        .render(
            files=files,
            expectations=expectations,
            failed_files=sum(1 for f in files if not f["success"]),
            gx_index=os.path.relpath(gx_index, target.parent),
        )
    )
    write_atomically(target, page_text)
    return target


def index_rows(docs_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """From the results kept in `docs_dir/results/`: one row per validated file (oldest run
    first) and one per expectation of each suite (files passed, failed, unexpected values)."""
    files: list[dict[str, Any]] = []
    by_expectation: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for path in sorted((docs_dir / "results").glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        meta, suite = document["meta"], document["suite_name"]
        run_time = datetime.fromisoformat(meta["run_id"]["run_time"]).astimezone(UTC)
        outcomes = document.get("results") or []
        unexpected = [int((o.get("result") or {}).get("unexpected_count") or 0) for o in outcomes]
        passed = sum(1 for o in outcomes if o.get("success"))
        run_name, batch_id, stamp = _page_key(document)  # how its GX page is found
        files.append(
            {
                "label": meta.get("file_label") or meta["batch_id"],
                "suite": suite,
                "time": f"{run_time:%Y-%m-%d %H:%M:%S}",
                "success": bool(document.get("success")),
                "passed": passed,
                "failed": len(outcomes) - passed,
                "unexpected": sum(unexpected),
                "run_name": run_name,
                "batch_id": batch_id,
                "stamp": stamp,
            }
        )
        for outcome, count in zip(outcomes, unexpected, strict=True):
            config = outcome.get("expectation_config") or {}
            kwargs, meta_e = config.get("kwargs") or {}, config.get("meta") or {}
            key = (
                suite,
                str(config.get("type", "")),
                str(kwargs.get("column", "")),
                str(meta_e.get("reason_code", "")),
            )
            entry = by_expectation.setdefault(
                key,
                {
                    "suite": key[0],
                    "type": key[1],
                    "column": key[2],
                    "rule": key[3],
                    "passed": 0,
                    "failed": 0,
                    "unexpected": 0,
                },
            )
            entry["passed" if outcome.get("success") else "failed"] += 1
            entry["unexpected"] += count
    return files, list(by_expectation.values())


def _page_key(document: dict[str, Any]) -> tuple[str, str, str]:
    """A kept result's key in `_pages_by_key`."""
    meta = document["meta"]
    run_time = datetime.fromisoformat(meta["run_id"]["run_time"]).astimezone(UTC)
    return (meta["run_id"]["run_name"], meta["batch_id"], f"{run_time:%Y%m%dT%H%M%S}")


def _pages_by_key(docs: Path) -> dict[tuple[str, str, str], Path]:
    """GX's validation pages by (run name, batch id, run time to the second): the page of a
    result is validations/<suite>/<run name>/<run time>/<batch id>.html."""
    pages: dict[tuple[str, str, str], Path] = {}
    for page in (docs / "validations").rglob("*.html"):
        pages[(page.parent.parent.name, page.stem, page.parent.name[:15])] = page
    return pages
