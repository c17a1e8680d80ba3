"""Row-level validation of a standardised raw frame against its Great Expectations suite (SPEC §3).

`validate_rows` runs the suite of `schemas/suites/` on one file's frame and returns one failure
row per (row, broken rule); `build_data_docs` renders the GX results as a static Data Docs site.
A big file is validated chunk by chunk: `conflicting_rows` over the whole file is computed first
and handed to each chunk's `validate_rows`, and `combine_results` makes one result per file.

How the frame reaches GX, and why (GX 1.24, pandas execution engine, no Polars support):

- Each column is its own one-column pandas batch indexed by `source_row`, so GX's
  `unexpected_index_list` names failing rows by record number. GX filters the whole batch frame
  once per metric; with the whole file in one batch that cost grows with the column count.
- Value rules (range, set, length, time bounds) ignore nulls, so they see only the column's
  non-null values; their `element_count` in the results is that non-null count. Not-null rules
  see the whole column. pandas' boolean indexing has a fast path for all-true masks, and this
  keeps GX's null filter on it.
- Strings become pandas' own Arrow-backed `str` dtype (GX's length check casts to `str`, a
  no-op then); booleans stay Arrow-backed (nullable without object arrays); numbers, decimals
  and timestamps go to numpy dtypes, because GX's between-check is vectorised only for those
  (it calls Python once per value otherwise). Decimals are compared as float64: exact enough
  for the ±10^9 bounds of a Decimal(18,2).
- numpy-backed pandas treats NaN as missing, which would let a "NaN" text pass the range rule of
  an optional number. NaN is therefore handed to GX as +inf: NaN and ±inf all fail
  `range:<column>` (not `required:`), and the detail shows the original value.
- GX fingerprints every in-memory batch under 1 GB with `pandas.util.hash_pandas_object`, which
  costs ~25 s per million Arrow-backed rows and is only batch metadata: it is switched off
  (`pandas_execution_engine.HASH_THRESHOLD = 0`) for this process.
- One COMPLETE pass (`exclude_unexpected_values`, no index query) gives counts and failing ids
  together: with the layout above a first BOOLEAN_ONLY pass costs nearly as much as this one
  (see `benchmarks/validation_overhead.py`), so a second pass for the ids would only add. The
  kept GX results are trimmed to 20 row ids per expectation for the Data Docs; every id is in
  `failures`.
- A helper thread converts the next columns (Polars, Arrow) while GX, mostly pure Python,
  validates the current one.

Great Expectations is imported lazily (it costs seconds); one ephemeral context serves the
process, and validations take turns on it (a lock), since its batch bookkeeping is shared.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import polars as pl

from servio.objectstore import is_object_url
from servio.schemas.suites import (
    HAS_ANSWER,
    IS_CONFLICTING_DUPLICATE,
    NOT_NULL,
    PARAM_LATEST_ALLOWED_AT,
    PARAM_REPORTING_CURRENCIES,
    load_suite,
)
from servio.schemas.tables import RawContract, RawField

SOURCE_ROW = "source_row"
FAILURE_SCHEMA = pl.Schema({SOURCE_ROW: pl.Int64, "reason_code": pl.String, "detail": pl.String})
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
DOCS_SITE = "servio"
_VALUE_PREVIEW = 40  # characters of a string value quoted in a detail
_PREFETCH_COLUMNS = 2  # columns converted ahead of GX; bounds the memory held in pandas
_TIMESTAMP_TEXT = "%Y-%m-%dT%H:%M:%S%.fZ"
_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [SOURCE_ROW],
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": DOCS_ROW_IDS,
}


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


# ---------------------------------------------------------------------------------------
# Great Expectations, loaded once


@dataclass
class _Gx:
    gx: Any
    context: Any
    batch_definition: Any


_GX: _Gx | None = None
# Validations from concurrent threads (a thread-pool task runner) take turns on the shared
# context; GX holds the GIL for most of its work anyway.
_GX_LOCK = threading.RLock()


def _gx() -> _Gx:
    """The shared ephemeral GX context and an in-memory dataframe batch definition."""
    global _GX
    with _GX_LOCK:
        if _GX is None:
            _GX = _load_gx()
        return _GX


def _load_gx() -> _Gx:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with warnings.catch_warnings(), _main_module_with_a_file():
        # GX probes the installed PySpark, which warns about pandas 3; servio uses no Spark.
        warnings.filterwarnings("ignore", "PySpark does not yet", FutureWarning)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0  # see the module docstring
    # This GX module pins its logger to INFO on import ("Created temporary directory…").
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = _ephemeral_context(gx, ProgressBarsConfig)
    asset = context.data_sources.add_pandas("servio_raw").add_dataframe_asset("standardised")
    return _Gx(gx, context, asset.add_batch_definition_whole_dataframe("one_column"))


@contextlib.contextmanager
def _main_module_with_a_file() -> Iterator[None]:
    """PySpark (imported by GX when installed) exits the process when `__main__` has neither a
    spec nor a file, taking it for a doctest run: that is how a Dask worker process starts.
    Give `__main__` a file name while GX is imported."""
    main = sys.modules.get("__main__")
    bare = (
        main is not None
        and getattr(main, "__spec__", None) is None
        and not hasattr(main, "__file__")
        and not hasattr(sys, "ps1")
    )
    if not bare:
        yield
        return
    main.__file__ = "<servio worker>"  # type: ignore[union-attr]
    try:
        yield
    finally:
        del main.__file__  # type: ignore[union-attr]


def _ephemeral_context(gx: Any, progress_bars_config: Any) -> Any:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = progress_bars_config(globally=False)
    return context


# ---------------------------------------------------------------------------------------
# validate_rows


def validate_rows(
    frame: pl.DataFrame,
    contract: RawContract,
    *,
    currency: str,
    ingested_at: datetime,
    file_label: str,
    conflicts: pl.DataFrame | None = None,
) -> ValidationResult:
    """Check every row of one standardised file against its contract's GX suite.

    `frame` holds `source_row` and every contract column, typed by the standardisation step.
    When `frame` is one chunk of a file, `conflicts` is `conflicting_rows` of the whole file
    (rows sharing key and version time with a differing row may sit in other chunks); None
    finds them in `frame`. Raises ValueError when a column is missing or `ingested_at` is naive.
    """
    _check_input(frame, contract, ingested_at)
    suite = load_suite(contract)
    expectations: list[dict[str, Any]] = suite["expectations"]
    latest_allowed_at = ingested_at.astimezone(UTC) + timedelta(days=1)
    parameters = {
        PARAM_REPORTING_CURRENCIES: [currency],
        PARAM_LATEST_ALLOWED_AT: latest_allowed_at,
    }

    gx_results, timings = _run_suite(frame, contract, suite, parameters, conflicts=conflicts)

    started = time.perf_counter()
    row_ids = [_unexpected_rows(result) for result in gx_results]
    context = _DetailContext(currency, latest_allowed_at)
    failures = _failures(frame, expectations, row_ids, context, conflicts)
    summary = _summary(expectations, gx_results)
    suite_result = _suite_result(suite, gx_results, parameters, file_label, ingested_at)
    timings["failures"] = time.perf_counter() - started
    return ValidationResult(
        file_label=file_label,
        source=contract.source,
        ingested_at=ingested_at,
        failures=failures,
        summary=summary,
        gx_result=suite_result,
        timings_s=timings,
    )


def _check_input(frame: pl.DataFrame, contract: RawContract, ingested_at: datetime) -> None:
    missing = [c for c in (SOURCE_ROW, *contract.names) if c not in frame.columns]
    if missing:
        raise ValueError(f"{contract.source} frame lacks column(s): {', '.join(missing)}")
    if ingested_at.tzinfo is None:
        raise ValueError("ingested_at must be timezone-aware")


def _derived_column(
    frame: pl.DataFrame, expectation: dict[str, Any], conflicts: pl.DataFrame | None = None
) -> pl.Series:
    """A helper column one of the suite's multi-column rules expects (see `schemas.suites`)."""
    column = expectation["kwargs"]["column"]
    recipe = expectation["meta"]["derived"]
    if column == HAS_ANSWER:
        present = [pl.col(c).is_not_null() for c in recipe["any_present"]]
        return frame.select(pl.any_horizontal(present).alias(HAS_ANSWER)).to_series()
    if column == IS_CONFLICTING_DUPLICATE:
        rows = (
            _conflicting_rows(frame, recipe["key"], recipe["version"], recipe["content"])
            if conflicts is None
            else conflicts
        )
        flag = pl.col(SOURCE_ROW).is_in(rows.get_column(SOURCE_ROW).implode())
        return frame.select(flag.alias(IS_CONFLICTING_DUPLICATE)).to_series()
    raise ValueError(f"unknown derived column {column!r} in the suite")


def conflict_recipe(contract: RawContract) -> tuple[str, list[str], list[str]] | None:
    """(key, version columns, content columns) of the suite's conflicting-duplicate rule."""
    for expectation in load_suite(contract)["expectations"]:
        if expectation["kwargs"]["column"] == IS_CONFLICTING_DUPLICATE:
            recipe = expectation["meta"]["derived"]
            return recipe["key"], list(recipe["version"]), list(recipe["content"])
    return None


def conflicting_rows(
    frame: pl.DataFrame, key: str, version: list[str], content: list[str]
) -> pl.DataFrame:
    """Rows sharing key and version time with a row of different content (see `conflict_recipe`).

    `frame` may hold only candidate rows of a file (every row whose key repeats): the answer is
    the same. Columns: source_row, conflict_rows (the group's record numbers).
    """
    return _conflicting_rows(frame, key, version, content)


def _version_expr(version: list[str]) -> pl.Expr:
    return pl.coalesce(version) if len(version) > 1 else pl.col(version[0])


def _conflicting_rows(
    frame: pl.DataFrame, key: str, version: list[str], content: list[str]
) -> pl.DataFrame:
    """Rows sharing key and version time with a row of different content.

    Columns: source_row, conflict_rows (the group's record numbers, for the detail).
    Rows whose key or version is null are left to the required rules.
    """
    candidates = frame.filter(_repeated_key(frame.get_column(key))).select(
        SOURCE_ROW,
        key,
        _version_expr(version).alias("_version"),
        pl.struct(content).alias("_content"),
    )
    groups = (
        candidates.drop_nulls([key, "_version"])
        .group_by(key, "_version")
        .agg(
            pl.col(SOURCE_ROW).sort().alias("conflict_rows"),
            pl.col("_content").n_unique().alias("_contents"),
        )
        .filter(pl.col("_contents") > 1)
    )
    return groups.select(
        pl.col("conflict_rows").alias(SOURCE_ROW), pl.col("conflict_rows")
    ).explode(SOURCE_ROW)


def _repeated_key(keys: pl.Series) -> pl.Series:
    """True where the key's hash occurs more than once: a superset of the repeated keys.

    Within one file keys are nearly always unique. Sorting 64-bit hashes is several times
    cheaper than Polars' hash-table `is_duplicated` on millions of distinct strings; a hash
    collision only adds a candidate, which the exact grouping then clears.
    """
    hashes = keys.hash()
    ordered = np.sort(hashes.to_numpy())
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size == 0:
        return pl.Series(np.zeros(keys.len(), dtype=bool))
    return hashes.is_in(pl.Series(np.unique(repeated)).implode())


def _run_suite(
    frame: pl.DataFrame,
    contract: RawContract,
    suite: dict[str, Any],
    parameters: dict[str, Any],
    result_format: dict[str, Any] | None = None,
    conflicts: pl.DataFrame | None = None,
) -> tuple[list[Any], dict[str, float]]:
    """Validate every expectation, one column (and null handling) per batch; results in suite order."""
    g = _gx()
    expectations: list[dict[str, Any]] = suite["expectations"]
    timings = {"prepare_to_pandas": 0.0, "wait_for_prepare": 0.0, "gx_validate": 0.0}
    results: list[Any] = [None] * len(expectations)
    with _GX_LOCK:
        batches = _prepared_batches(frame, contract, expectations, timings, conflicts)
        for pandas_frame, chosen in batches:
            started = time.perf_counter()
            batch = g.batch_definition.get_batch(batch_parameters={"dataframe": pandas_frame})
            part = g.gx.ExpectationSuite(
                name=f"{suite['name']}.{pandas_frame.columns[0]}",
                expectations=[expectations[p] for p in chosen],
            )
            outcome = batch.validate(
                part,
                result_format=result_format or _RESULT_FORMAT,
                expectation_parameters=parameters,
            )
            timings["gx_validate"] += time.perf_counter() - started
            for p, result in zip(chosen, outcome.results, strict=True):
                _raise_if_errored(result, expectations[p])
                results[p] = result
    return results, timings


def _prepared_batches(
    frame: pl.DataFrame,
    contract: RawContract,
    expectations: list[dict[str, Any]],
    timings: dict[str, float],
    conflicts: pl.DataFrame | None = None,
) -> Iterator[tuple[Any, list[int]]]:
    """Each column's pandas batches with the positions of their expectations, in suite order.

    A helper thread prepares the next columns (Polars and Arrow work, mostly outside the GIL)
    while the caller runs GX, which is mostly pure Python, on the current one.
    """
    fields = {f.name: f for f in contract.fields}
    by_column: dict[str, list[int]] = {}
    for position, expectation in enumerate(expectations):
        by_column.setdefault(expectation["kwargs"]["column"], []).append(position)

    def collect(future: Future[tuple[list[tuple[Any, list[int]]], float]]) -> list[Any]:
        started = time.perf_counter()
        batches, prepare_seconds = future.result()
        timings["wait_for_prepare"] += time.perf_counter() - started
        timings["prepare_to_pandas"] += prepare_seconds
        return batches

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="servio-prepare") as pool:
        pending: deque[Future[tuple[list[tuple[Any, list[int]]], float]]] = deque()
        for column, positions in by_column.items():
            args = (frame, fields.get(column), column, positions, expectations, conflicts)
            pending.append(pool.submit(_pandas_batches, *args))
            if len(pending) > _PREFETCH_COLUMNS:
                yield from collect(pending.popleft())
        while pending:
            yield from collect(pending.popleft())


def _pandas_batches(
    frame: pl.DataFrame,
    raw_field: RawField | None,
    column: str,
    positions: list[int],
    expectations: list[dict[str, Any]],
    conflicts: pl.DataFrame | None = None,
) -> tuple[list[tuple[Any, list[int]]], float]:
    """The one-column pandas batches of one column and the expectations each gets, timed."""
    started = time.perf_counter()
    if raw_field is None:
        values = _derived_column(frame, expectations[positions[0]], conflicts)
    else:
        values = _as_validated(frame.get_column(column))
    whole = pl.DataFrame([frame.get_column(SOURCE_ROW), values])
    batches = [
        (_to_pandas(data, column), chosen)
        for data, chosen in _column_batches(whole, positions, expectations)
    ]
    return batches, time.perf_counter() - started


def _column_batches(
    whole: pl.DataFrame, positions: list[int], expectations: list[dict[str, Any]]
) -> list[tuple[pl.DataFrame, list[int]]]:
    """Not-null rules see the whole column, value rules only its non-null rows."""
    column = whole.columns[1]
    if not whole.get_column(column).has_nulls():
        return [(whole, positions)]
    presence = [p for p in positions if expectations[p]["type"] == NOT_NULL]
    values = [p for p in positions if expectations[p]["type"] != NOT_NULL]
    batches = [(whole, presence)] if presence else []
    if values:
        batches.append((whole.drop_nulls(column), values))
    return batches


def _as_validated(values: pl.Series) -> pl.Series:
    """A column as GX sees it: decimals as float64, NaN as +inf (see the module docstring)."""
    if isinstance(values.dtype, pl.Decimal):
        return values.cast(pl.Float64)
    if values.dtype.is_float() and values.is_nan().any():
        return values.fill_nan(float("inf"))
    return values


def _to_pandas(data: pl.DataFrame, column: str) -> Any:
    import pandas as pd

    series = data.get_column(column)
    values = series.to_pandas(use_pyarrow_extension_array=series.dtype == pl.Boolean)
    index = pd.Index(data.get_column(SOURCE_ROW).to_numpy(), name=SOURCE_ROW, copy=False)
    return pd.DataFrame({column: values.array}, index=index, copy=False)


def _raise_if_errored(result: Any, expectation: dict[str, Any]) -> None:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        raise RuntimeError(
            f"GX could not evaluate {expectation['type']} on {expectation['kwargs']['column']}: "
            f"{info.get('exception_message')}"
        )


def _unexpected_rows(result: Any) -> list[int]:
    """Record numbers from `unexpected_index_list`.

    With a named index and `exclude_unexpected_values`, GX returns `[{"source_row": [ids]}]`;
    otherwise one `{"source_row": id, ...}` per row. Both shapes are read.
    """
    rows: list[int] = []
    for entry in (result.result or {}).get("unexpected_index_list") or []:
        value = entry[SOURCE_ROW] if isinstance(entry, dict) else entry
        if isinstance(value, list):
            rows.extend(int(v) for v in value)
        else:
            rows.append(int(value))
    return rows


# ---------------------------------------------------------------------------------------
# failures and their details


@dataclass(frozen=True)
class _DetailContext:
    """The runtime values some details quote."""

    currency: str
    latest_allowed_at: datetime


def _failures(
    frame: pl.DataFrame,
    expectations: list[dict[str, Any]],
    row_ids: list[list[int]],
    context: _DetailContext,
    conflicts: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per (failing row, expectation), with the rule and offending value in words."""
    all_ids = sorted({row for ids in row_ids for row in ids})
    if not all_ids:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    failing = frame.filter(pl.col(SOURCE_ROW).is_in(pl.Series(all_ids, dtype=pl.Int64).implode()))
    parts: list[pl.DataFrame] = []
    for order, (expectation, ids) in enumerate(zip(expectations, row_ids, strict=True)):
        if not ids:
            continue
        column = expectation["kwargs"]["column"]
        rows = pl.DataFrame({SOURCE_ROW: ids}, schema={SOURCE_ROW: pl.Int64})
        if column == IS_CONFLICTING_DUPLICATE:
            recipe = expectation["meta"]["derived"]
            if conflicts is None:
                conflicts = _conflicting_rows(
                    failing, recipe["key"], recipe["version"], recipe["content"]
                )
            detail = _conflict_detail(rows, failing, conflicts, expectation, recipe)
        else:
            detail = _value_detail(rows, failing, expectation, context)
        parts.append(
            detail.select(
                pl.col(SOURCE_ROW),
                pl.lit(expectation["meta"]["reason_code"]).alias("reason_code"),
                pl.col("detail"),
                pl.lit(order).alias("_order"),
            )
        )
    return pl.concat(parts).sort(SOURCE_ROW, "_order").drop("_order").cast(FAILURE_SCHEMA)


def _value_detail(
    rows: pl.DataFrame,
    failing: pl.DataFrame,
    expectation: dict[str, Any],
    context: _DetailContext,
) -> pl.DataFrame:
    """`<rule>, got <value>` for each failing row of one single-column expectation."""
    column = expectation["kwargs"]["column"]
    rule = expectation["meta"]["rule"]
    rule_kind = expectation["meta"]["reason_code"].split(":")[0]
    if column == HAS_ANSWER:  # a derived column: the rule says it all
        return rows.with_columns(pl.lit(rule).alias("detail"))
    joined = rows.join(failing.select(SOURCE_ROW, column), on=SOURCE_ROW, how="left")
    value = pl.col(column)
    if rule_kind == "required":
        text = pl.lit(f"{rule}, got null")
    elif rule_kind == "length":
        got = pl.format("{} characters: {}", value.str.len_chars(), _quoted(value))
        text = pl.format("{}, got {}", pl.lit(rule), got)
    elif rule_kind == "currency":
        text = pl.format("{} ({}), got {}", pl.lit(rule), pl.lit(context.currency), _quoted(value))
    elif rule_kind == "future":
        bound = context.latest_allowed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        got = _as_text(value, failing.schema[column])
        text = pl.format("{} ({}), got {}", pl.lit(rule), pl.lit(bound), got)
    else:
        text = pl.format("{}, got {}", pl.lit(rule), _as_text(value, failing.schema[column]))
    return joined.with_columns(text.alias("detail"))


def _as_text(value: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A value as a reader would write it: 'text', -5, 12.5, NaN, inf, 2031-01-01T00:00:00Z."""
    if dtype == pl.String:
        return _quoted(value)
    if isinstance(dtype, pl.Datetime):
        return value.dt.to_string(_TIMESTAMP_TEXT)
    if dtype.is_float():
        whole = value.is_finite() & (value == value.round(0)) & (value.abs() < 1e15)
        return (
            pl.when(whole)
            .then(value.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(value.cast(pl.String))
        )
    return value.cast(pl.String)


def _quoted(value: pl.Expr) -> pl.Expr:
    preview = (
        pl.when(value.str.len_chars() > _VALUE_PREVIEW)
        .then(value.str.slice(0, _VALUE_PREVIEW) + "…")
        .otherwise(value)
    )
    return pl.format("'{}'", preview)


def _conflict_detail(
    rows: pl.DataFrame,
    failing: pl.DataFrame,
    conflicts: pl.DataFrame,
    expectation: dict[str, Any],
    recipe: dict[str, Any],
) -> pl.DataFrame:
    key, version = recipe["key"], recipe["version"]
    joined = rows.join(
        failing.select(SOURCE_ROW, key, _version_expr(version).alias("_version")),
        on=SOURCE_ROW,
        how="left",
    ).join(conflicts, on=SOURCE_ROW, how="left")
    text = pl.format(
        "{}: {} {} at {} has differing rows {}",
        pl.lit(expectation["meta"]["rule"]),
        pl.lit(key),
        _quoted(pl.col(key)),
        pl.col("_version").dt.to_string(_TIMESTAMP_TEXT),
        pl.col("conflict_rows").cast(pl.List(pl.String)).list.join(", "),
    )
    return joined.with_columns(text.alias("detail"))


# ---------------------------------------------------------------------------------------
# summary and the GX result kept for Data Docs


def _summary(expectations: list[dict[str, Any]], results: list[Any]) -> pl.DataFrame:
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


def _suite_result(
    suite: dict[str, Any],
    results: list[Any],
    parameters: dict[str, Any],
    file_label: str,
    ingested_at: datetime,
) -> Any:
    """One `ExpectationSuiteValidationResult` for the file, from the per-column batch results."""
    g = _gx()
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
            "great_expectations_version": g.gx.__version__,
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
    suite_result = _suite_result(suite, results, parameters, first.file_label, first.ingested_at)
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
        gx_result=suite_result,
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
    for name in ("unexpected_index_list", "partial_unexpected_index_list"):
        if name in merged:
            rows = [row for outcome in outcomes for row in _listed_rows(outcome.get(name))]
            merged[name] = [{SOURCE_ROW: rows[:DOCS_ROW_IDS]}] if rows else []
    combined.result = merged
    combined.success = all(bool(result.success) for result in chunk_results)
    return combined


def _listed_rows(entries: list[Any] | None) -> list[int]:
    rows: list[int] = []
    for entry in entries or []:
        value = entry[SOURCE_ROW] if isinstance(entry, dict) else entry
        rows.extend(value if isinstance(value, list) else [value])
    return rows


# ---------------------------------------------------------------------------------------
# Data Docs


def write_gx_result(result: ValidationResult, path: str | Path) -> str | Path:
    """Save the file's GX result as JSON, for `build_data_docs` in another task or process.
    An object-store URL (staging of an s3:// lake) is written with one PUT, whole or not."""
    if is_object_url(path):
        with fsspec.open(str(path), "w", encoding="utf-8") as handle:
            handle.write(_gx_document(result.gx_result))
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, _gx_document(result.gx_result))
    return path


def build_data_docs(results: Iterable[ValidationResult | Path | str], docs_dir: Path) -> Path:
    """Render validation results as a static GX Data Docs site under `docs_dir`.

    `results` are `ValidationResult`s or JSON files written by `write_gx_result`. Each is also
    kept in `docs_dir/results/`, and every result kept there is rendered, so the index lists
    every file validated into the same directory (validating the same file at the same
    ingestion time again replaces its page). Returns the path of `index.html`.
    """
    g = _gx()
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
            document = _gx_document(result.gx_result)
        else:
            document = _read_text(result)
        _write_atomically(kept_dir / f"{_result_stem(json.loads(document))}.json", document)

    with _GX_LOCK:
        # A fresh context: its in-memory result store then holds exactly what the site shows.
        context = _ephemeral_context(g.gx, ProgressBarsConfig)
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


def read_result_text(location: str | Path) -> str:
    """A GX result written by `write_gx_result` (local or on object storage), as text."""
    return _read_text(location)


def _read_text(location: str | Path) -> str:
    if is_object_url(location):
        with fsspec.open(str(location), "r", encoding="utf-8") as handle:
            return str(handle.read())
    return Path(location).read_text(encoding="utf-8")


def _gx_document(suite_result: Any) -> str:
    return json.dumps(suite_result.to_json_dict(), indent=1, sort_keys=True, default=str)


def _write_atomically(path: Path, text: str) -> None:
    """A half-written result would break every later build of the site."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


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


# Bytes of a file label in a Data Docs key: keys become file names (with a time stamp and the
# suite name around them), which most filesystems cap at 255 bytes.
MAX_KEY_BYTES = 120


def _key_safe(label: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
    if len(safe.encode()) <= MAX_KEY_BYTES:
        return safe
    # Too long (a 200-character name, or fewer CJK characters): a prefix and a hash of the
    # whole label, so two long names never share a page.
    import hashlib

    digest = hashlib.sha256(label.encode()).hexdigest()[:16]
    prefix = safe.encode()[: MAX_KEY_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{prefix}-{digest}"


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
