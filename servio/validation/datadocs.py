"""Great Expectations Data Docs: every kept file result rendered as GX's static site, and an
offline index of its pages (GX's own index needs scripts from public CDNs)."""

from __future__ import annotations

import html
import json
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
    kept in `docs_dir/results/`, and every result kept there is rendered, so the index lists
    every file validated into the same directory (validating the same file at the same
    ingestion time again replaces its page). Returns the path of `index.html`.
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
    for result in results:
        if isinstance(result, ValidationResult):
            document = gx_document(result.gx_result)
        else:
            document = read_result_text(result)
        write_atomically(kept_dir / f"{_result_stem(json.loads(document))}.json", document)

    with gx.GX_LOCK:
        # A fresh context: its in-memory result store then holds exactly what the site shows.
        context = gx.ephemeral_context(g.gx, ProgressBarsConfig)
        context.add_data_docs_site(DOCS_SITE, _site_config(docs_dir))
        for path in sorted(kept_dir.glob("*.json")):
            suite_result = _loadable(json.loads(path.read_text(encoding="utf-8")))
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(suite_result.suite_name),
                run_id=suite_result.meta["run_id"],
                batch_identifier=suite_result.batch_id,
            )
            context.validation_results_store.set(key, suite_result)
        context.build_data_docs(site_names=[DOCS_SITE])
    return docs_dir / "index.html"


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


def offline_index(gx_index: Path) -> Path:
    """A plain list of every validation page. GX's own index draws its table with scripts
    from public CDNs, so without internet it shows no results; this page needs none."""
    docs = gx_index.parent
    pages = sorted((docs / "validations").rglob("*.html"))
    items = "\n".join(
        f'<li><a href="{html.escape(p.relative_to(docs).as_posix())}">'
        f"{html.escape(p.relative_to(docs / 'validations').parent.parent.as_posix())}</a> "
        f"— {html.escape(p.parent.name)}</li>"
        for p in pages
    )
    index = docs / "servio-validations.html"
    index.write_text(
        "<!doctype html><meta charset=utf-8><title>servio validations</title>"
        "<h1>Great Expectations validation results</h1>"
        f'<p>One page per validated file and run (newest runs last). <a href="{gx_index.name}">'
        "GX Data Docs home</a> (needs internet for its styling and table).</p>"
        f"<ul>\n{items}\n</ul>\n",
        encoding="utf-8",
    )
    return index
