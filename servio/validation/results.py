"""The Great Expectations result of a file: one `ExpectationSuiteValidationResult` per file
(chunk results combined; row ids trimmed for the Data Docs), its per-expectation summary, and
its JSON, written where staging can reach it and read back by the Data Docs step."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import polars as pl

from servio.objectstore import is_object_url
from servio.schemas.raw import SOURCE_ROW
from servio.schemas.suites import PARAM_LATEST_ALLOWED_AT, PARAM_REPORTING_CURRENCIES

SUMMARY_SCHEMA = pl.Schema(
    {
        "expectation_type": pl.String,
        "column": pl.String,
        "reason_code": pl.String,
        "success": pl.Boolean,
        "element_count": pl.Int64,
        "unexpected_count": pl.Int64,
    }
)
DOCS_ROW_IDS = 20  # row ids kept per expectation in the Data Docs results


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of validating one raw file.

    `failures`: one row per (source_row, broken rule), sorted by row then suite order.
    `summary`: one row per expectation of the suite, with its unexpected count (value rules
    count over the column's non-null values, not-null rules over all rows).
    `gx_result`: the GX `ExpectationSuiteValidationResult` of the file (row ids trimmed), for Data Docs.
    """

    file_label: str
    source: str
    ingested_at: datetime
    failures: pl.DataFrame
    summary: pl.DataFrame
    gx_result: Any
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def failed_rows(self) -> pl.Series:
        """Distinct record numbers that broke at least one rule, ascending."""
        return self.failures.get_column(SOURCE_ROW).unique().sort()


def summary_of(expectations: list[dict[str, Any]], results: list[Any]) -> pl.DataFrame:
    records = []
    for expectation, result in zip(expectations, results, strict=True):
        outcome = result.result or {}
        records.append(
            {
                "expectation_type": expectation["type"],
                "column": expectation["kwargs"]["column"],
                "reason_code": expectation["meta"]["reason_code"],
                "success": bool(result.success),
                "element_count": outcome.get("element_count"),
                "unexpected_count": outcome.get("unexpected_count"),
            }
        )
    return pl.DataFrame(records, schema=SUMMARY_SCHEMA)


def suite_result(
    suite: dict[str, Any],
    results: list[Any],
    parameters: dict[str, Any],
    file_label: str,
    ingested_at: datetime,
) -> Any:
    """One `ExpectationSuiteValidationResult` for the file, from the per-column batch results."""
    import great_expectations
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.validator.validation_statistics import calc_validation_statistics

    for result in results:
        _trim_row_ids(result.result or {})
    statistics = calc_validation_statistics(results)
    # Data Docs keys become path parts: no "/" in them. The index shows the label as asset name.
    key_label = _key_safe(file_label)
    run_id = RunIdentifier(run_name=key_label, run_time=ingested_at.astimezone(UTC))
    return ExpectationSuiteValidationResult(
        success=statistics.success,
        results=results,
        suite_name=suite["name"],
        suite_parameters={
            PARAM_REPORTING_CURRENCIES: parameters[PARAM_REPORTING_CURRENCIES],
            PARAM_LATEST_ALLOWED_AT: parameters[PARAM_LATEST_ALLOWED_AT].isoformat(),
        },
        statistics={
            "evaluated_expectations": statistics.evaluated_expectations,
            "successful_expectations": statistics.successful_expectations,
            "unsuccessful_expectations": statistics.unsuccessful_expectations,
            "success_percent": statistics.success_percent,
        },
        meta={
            "great_expectations_version": great_expectations.__version__,
            "run_id": run_id,
            "validation_time": run_id.run_time,
            "file_label": file_label,
            "batch_id": key_label,
            "batch_spec": {"data_asset_name": file_label},
        },
        batch_id=key_label,
    )


def _trim_row_ids(outcome: dict[str, Any]) -> None:
    for name in ("unexpected_index_list", "partial_unexpected_index_list"):
        entries = outcome.get(name)
        if not entries:
            continue
        trimmed: list[Any] = []
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get(SOURCE_ROW), list):
                trimmed.append({**entry, SOURCE_ROW: entry[SOURCE_ROW][:DOCS_ROW_IDS]})
            else:
                trimmed.append(entry)
        outcome[name] = trimmed[:DOCS_ROW_IDS]


def combine_results(parts: list[ValidationResult]) -> ValidationResult:
    """One file's result from the results of its chunks (in file order): counts summed,
    failures concatenated, row ids in the GX result trimmed as for a whole file."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    per_expectation = zip(*(part.gx_result.results for part in parts), strict=True)
    results = [_combined_expectation(list(chunk_results)) for chunk_results in per_expectation]
    suite = {"name": first.gx_result.suite_name}
    kept = first.gx_result.suite_parameters
    parameters = {
        PARAM_REPORTING_CURRENCIES: kept[PARAM_REPORTING_CURRENCIES],
        PARAM_LATEST_ALLOWED_AT: datetime.fromisoformat(kept[PARAM_LATEST_ALLOWED_AT]),
    }
    file_result = suite_result(suite, results, parameters, first.file_label, first.ingested_at)
    summaries = pl.concat([part.summary for part in parts])
    summary = (
        summaries.group_by("expectation_type", "column", "reason_code", maintain_order=True)
        .agg(pl.col("success").all(), pl.col("element_count", "unexpected_count").sum())
        .cast(SUMMARY_SCHEMA)
    )
    timings: dict[str, float] = {}
    for part in parts:
        for name, seconds in part.timings_s.items():
            timings[name] = timings.get(name, 0.0) + seconds
    return ValidationResult(
        file_label=first.file_label,
        source=first.source,
        ingested_at=first.ingested_at,
        failures=pl.concat([part.failures for part in parts]),
        summary=summary,
        gx_result=file_result,
        timings_s=timings,
    )


def _combined_expectation(chunk_results: list[Any]) -> Any:
    """One expectation's result over the chunks: the suite's rules have no `mostly`, so it
    succeeds when every chunk does; percentages are recomputed from the summed counts (in
    GX's own order of operations, so a one-chunk and a many-chunk result agree exactly)."""
    combined = copy.deepcopy(chunk_results[0])
    outcomes = [result.result or {} for result in chunk_results]
    merged: dict[str, Any] = dict(outcomes[0])
    for name in ("element_count", "unexpected_count", "missing_count"):
        if name in merged:
            merged[name] = sum(int(outcome.get(name) or 0) for outcome in outcomes)
    _recount(merged)
    for name in ("unexpected_index_list", "partial_unexpected_index_list"):
        if name in merged:
            rows = [row for outcome in outcomes for row in _listed_rows(outcome.get(name))]
            merged[name] = [{SOURCE_ROW: rows[:DOCS_ROW_IDS]}] if rows else []
    combined.result = merged
    combined.success = all(bool(result.success) for result in chunk_results)
    return combined


def file_expectation(batch_result: Any, elements: int, rows: list[int]) -> Any:
    """One file's share of an expectation's result over a batch of several files: its
    `elements` (rows, or non-null values for a value rule) and its failing record numbers
    `rows` (every one). Value rules see only non-null values, so nothing is missing; the
    values themselves are not kept (`exclude_unexpected_values`)."""
    result = copy.copy(batch_result)
    outcome: dict[str, Any] = dict(batch_result.result or {})
    outcome["element_count"] = elements
    outcome["unexpected_count"] = len(rows)
    if "missing_count" in outcome:
        if outcome["missing_count"]:
            raise ValueError("a value rule's batch held nulls: its result cannot be split")
        outcome["missing_count"] = 0
    _recount(outcome)
    for name in ("unexpected_index_list", "partial_unexpected_index_list"):
        if name in outcome:
            outcome[name] = [{SOURCE_ROW: rows}] if rows else []
    for name in ("partial_unexpected_list", "partial_unexpected_counts", "unexpected_list"):
        if name in outcome:
            outcome[name] = []
    result.result = outcome
    result.success = not rows
    return result


def _recount(merged: dict[str, Any]) -> None:
    """Percentages from the counts, in GX's own order of operations."""
    elements, unexpected = merged.get("element_count") or 0, merged.get("unexpected_count") or 0
    present = elements - (merged.get("missing_count") or 0)
    if "unexpected_percent" in merged:
        denominator = present if "missing_count" in merged else elements
        merged["unexpected_percent"] = unexpected / denominator * 100 if denominator else None
    if "missing_percent" in merged:
        merged["missing_percent"] = merged["missing_count"] / elements * 100 if elements else None
    if "unexpected_percent_total" in merged:
        merged["unexpected_percent_total"] = unexpected / elements * 100 if elements else None
    if "unexpected_percent_nonmissing" in merged:
        merged["unexpected_percent_nonmissing"] = unexpected / present * 100 if present else None


def _listed_rows(entries: list[Any] | None) -> list[int]:
    rows: list[int] = []
    for entry in entries or []:
        value = entry[SOURCE_ROW] if isinstance(entry, dict) else entry
        rows.extend(value if isinstance(value, list) else [value])
    return rows


def write_gx_result(result: ValidationResult, path: str | Path) -> str | Path:
    """Save the file's GX result as JSON, for `build_data_docs` in another task or process.
    An object-store URL (staging of an s3:// lake) is written with one PUT, whole or not."""
    if is_object_url(path):
        with fsspec.open(str(path), "w", encoding="utf-8") as handle:
            handle.write(gx_document(result.gx_result))
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, gx_document(result.gx_result))
    return path


def read_result_text(location: str | Path) -> str:
    """A GX result written by `write_gx_result` (local or on object storage), as text."""
    return _read_text(location)


def _read_text(location: str | Path) -> str:
    if is_object_url(location):
        with fsspec.open(str(location), "r", encoding="utf-8") as handle:
            return str(handle.read())
    return Path(location).read_text(encoding="utf-8")


def gx_document(suite_result: Any) -> str:
    return json.dumps(suite_result.to_json_dict(), indent=1, sort_keys=True, default=str)


def write_atomically(path: Path, text: str) -> None:
    """A half-written result would break every later build of the site."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


# Bytes of a file label in a Data Docs key: keys become file names (with a time stamp and the
# suite name around them), which most filesystems cap at 255 bytes.
MAX_KEY_BYTES = 120


def _key_safe(label: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
    if len(safe.encode()) <= MAX_KEY_BYTES:
        return safe
    # Too long (a 200-character name, or fewer CJK characters): a prefix and a hash of the
    # whole label, so two long names never share a page.
    digest = hashlib.sha256(label.encode()).hexdigest()[:16]
    prefix = safe.encode()[: MAX_KEY_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{prefix}-{digest}"
