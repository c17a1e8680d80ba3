"""The Great Expectations suite of a raw contract, run on a standardised frame (SPEC §3): the
only module that imports great_expectations (lazily: it costs seconds); `GxValidator` is the
`Validator` staging uses by default.

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
import logging
import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from servio.schemas.raw import SOURCE_ROW, RawContract, RawField
from servio.schemas.suites import (
    HAS_ANSWER,
    IS_CONFLICTING_DUPLICATE,
    NOT_NULL,
    PARAM_LATEST_ALLOWED_AT,
    PARAM_REPORTING_CURRENCIES,
    load_suite,
)
from servio.validation.results import (
    DOCS_ROW_IDS,
    ValidationResult,
    combine_results,
    suite_result,
    summary_of,
    write_gx_result,
)
from servio.validation.rules import DetailContext, RuleCheck, conflicting_rows, failures

_PREFETCH_COLUMNS = 2  # columns converted ahead of GX; bounds the memory held in pandas
_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [SOURCE_ROW],
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": DOCS_ROW_IDS,
}


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
GX_LOCK = threading.RLock()


def load() -> _Gx:
    """The shared ephemeral GX context and an in-memory dataframe batch definition."""
    global _GX
    with GX_LOCK:
        if _GX is None:
            _GX = _loadload()
        return _GX


def _loadload() -> _Gx:
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
    context = ephemeral_context(gx, ProgressBarsConfig)
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


def ephemeral_context(gx: Any, progress_bars_config: Any) -> Any:
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
    context = DetailContext(currency, latest_allowed_at)
    found = failures(frame, expectations, row_ids, context, conflicts)
    summary = summary_of(expectations, gx_results)
    file_result = suite_result(suite, gx_results, parameters, file_label, ingested_at)
    timings["failures"] = time.perf_counter() - started
    return ValidationResult(
        file_label=file_label,
        source=contract.source,
        ingested_at=ingested_at,
        failures=found,
        summary=summary,
        gx_result=file_result,
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
            conflicting_rows(frame, recipe["key"], recipe["version"], recipe["content"])
            if conflicts is None
            else conflicts
        )
        flag = pl.col(SOURCE_ROW).is_in(rows.get_column(SOURCE_ROW).implode())
        return frame.select(flag.alias(IS_CONFLICTING_DUPLICATE)).to_series()
    raise ValueError(f"unknown derived column {column!r} in the suite")


def _run_suite(
    frame: pl.DataFrame,
    contract: RawContract,
    suite: dict[str, Any],
    parameters: dict[str, Any],
    result_format: dict[str, Any] | None = None,
    conflicts: pl.DataFrame | None = None,
) -> tuple[list[Any], dict[str, float]]:
    """Validate every expectation, one column (and null handling) per batch; results in suite order."""
    g = load()
    expectations: list[dict[str, Any]] = suite["expectations"]
    timings = {"prepare_to_pandas": 0.0, "wait_for_prepare": 0.0, "gx_validate": 0.0}
    results: list[Any] = [None] * len(expectations)
    with GX_LOCK:
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


def is_loaded() -> bool:
    """Whether this process has imported Great Expectations (it costs seconds)."""
    return _GX is not None


class GxValidator:
    """The contract's Great Expectations suite (`schemas/suites/`); keeps each file's GX result
    (row ids trimmed) for the Data Docs. Holds no state: it travels to Dask workers."""

    def check(
        self,
        typed: pl.DataFrame,
        contract: RawContract,
        *,
        currency: str,
        ingested_at: datetime,
        file_label: str,
        conflicts: pl.DataFrame | None = None,
    ) -> RuleCheck:
        result = validate_rows(
            typed,
            contract,
            currency=currency,
            ingested_at=ingested_at,
            file_label=file_label,
            conflicts=conflicts,
        )
        # The failures become quarantine rows; the result keeps only counts and row ids.
        kept = replace(result, failures=result.failures.clear())
        return RuleCheck(result.failures.select(SOURCE_ROW, "reason_code", "detail"), kept)

    def keep(self, kept: Sequence[Any], path: str) -> str | None:
        write_gx_result(combine_results(list(kept)), path)
        return path
