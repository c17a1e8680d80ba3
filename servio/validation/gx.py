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
    file_expectation,
    suite_result,
    summary_of,
    write_gx_result,
)
from servio.validation.rules import (
    FILE_BITS,
    DetailContext,
    RuleCheck,
    conflicting_rows,
    failures,
    file_of,
    record_of,
)

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
    _, [result] = validate_files(
        frame.lazy(),
        contract,
        currency=currency,
        ingested_at=ingested_at,
        files=[file_label],
        conflicts=conflicts,
    )
    return result


def validate_files(
    frame: pl.LazyFrame,
    contract: RawContract,
    *,
    currency: str,
    ingested_at: datetime,
    files: Sequence[str],
    conflicts: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, list[ValidationResult]]:
    """Check the rows of several files (one batch, one GX run per column) against the
    contract's suite: the failures in batch row ids (`validation.rules.FILE_BITS`), and one
    result per file (its failures in record numbers), the GX results split by file.

    GX's cost is mostly fixed per expectation and call: one batch for many files pays it
    once. Each column is read from `frame` when GX needs it, so a batch of staged Parquet
    parts is never held whole."""
    names = frame.collect_schema().names()
    _check_input(names, contract, ingested_at)
    suite = load_suite(contract)
    expectations: list[dict[str, Any]] = suite["expectations"]
    latest_allowed_at = ingested_at.astimezone(UTC) + timedelta(days=1)
    parameters = {
        PARAM_REPORTING_CURRENCIES: [currency],
        PARAM_LATEST_ALLOWED_AT: latest_allowed_at,
    }

    gx_results, counts, timings = _run_suite(
        frame, contract, suite, parameters, conflicts=conflicts, single_file=len(files) == 1
    )

    started = time.perf_counter()
    row_ids = [_unexpected_rows(result) for result in gx_results]
    context = DetailContext(currency, latest_allowed_at)
    all_ids = sorted({row for ids in row_ids for row in ids})
    failing = (
        frame.select(_detail_columns(expectations, row_ids, names))
        .filter(pl.col(SOURCE_ROW).is_in(pl.Series(all_ids, dtype=pl.Int64).implode()))
        .collect()
    )
    found = failures(failing, expectations, row_ids, context, conflicts)
    by_file = _split_by_file(expectations, gx_results, row_ids, counts, len(files))
    results = []
    for index, label in enumerate(files):
        file_results = by_file[index]
        mine = found.filter(file_of(pl.col(SOURCE_ROW)) == index).with_columns(
            record_of(pl.col(SOURCE_ROW)).alias(SOURCE_ROW)
        )
        results.append(
            ValidationResult(
                file_label=label,
                source=contract.source,
                ingested_at=ingested_at,
                failures=mine,
                summary=summary_of(expectations, file_results),
                gx_result=suite_result(suite, file_results, parameters, label, ingested_at),
                timings_s=timings,
            )
        )
    timings["failures"] = time.perf_counter() - started
    return found, results


def _detail_columns(
    expectations: list[dict[str, Any]], row_ids: list[list[int]], names: list[str]
) -> list[str]:
    """The columns the failure details quote (only those of rules that failed are read)."""
    needed = {SOURCE_ROW}
    for expectation, ids in zip(expectations, row_ids, strict=True):
        if not ids:
            continue
        column = expectation["kwargs"]["column"]
        if column == IS_CONFLICTING_DUPLICATE:
            recipe = expectation["meta"]["derived"]
            needed.update([recipe["key"], *recipe["version"], *recipe["content"]])
        elif column in names:
            needed.add(column)
    return [name for name in names if name in needed]


def _split_by_file(
    expectations: list[dict[str, Any]],
    gx_results: list[Any],
    row_ids: list[list[int]],
    counts: dict[str, dict[int, tuple[int, int]]],
    files: int,
) -> list[list[Any]]:
    """Each file's GX results: a batch of one file is GX's own; otherwise each expectation's
    result is recounted for the file (`results.file_expectation`)."""
    if files == 1:
        return [gx_results]
    split: list[list[Any]] = [[] for _ in range(files)]
    for expectation, result, ids in zip(expectations, gx_results, row_ids, strict=True):
        column = expectation["kwargs"]["column"]
        rows_by_file: dict[int, list[int]] = {}
        for row in ids:
            rows_by_file.setdefault(row >> FILE_BITS, []).append(row & ((1 << FILE_BITS) - 1))
        for index in range(files):
            rows, present = counts[column].get(index, (0, 0))
            elements = rows if expectation["type"] == NOT_NULL else present
            split[index].append(file_expectation(result, elements, rows_by_file.get(index, [])))
    return split


def _check_input(names: list[str], contract: RawContract, ingested_at: datetime) -> None:
    missing = [c for c in (SOURCE_ROW, *contract.names) if c not in names]
    if missing:
        raise ValueError(f"{contract.source} frame lacks column(s): {', '.join(missing)}")
    if ingested_at.tzinfo is None:
        raise ValueError("ingested_at must be timezone-aware")


def _derived_column(
    frame: pl.LazyFrame, expectation: dict[str, Any], conflicts: pl.DataFrame | None = None
) -> pl.DataFrame:
    """`source_row` and a helper column one of the suite's multi-column rules expects (see
    `schemas.suites`)."""
    column = expectation["kwargs"]["column"]
    recipe = expectation["meta"]["derived"]
    if column == HAS_ANSWER:
        present = [pl.col(c).is_not_null() for c in recipe["any_present"]]
        return frame.select(SOURCE_ROW, pl.any_horizontal(present).alias(HAS_ANSWER)).collect()
    if column == IS_CONFLICTING_DUPLICATE:
        rows = (
            conflicting_rows(frame.collect(), recipe["key"], recipe["version"], recipe["content"])
            if conflicts is None
            else conflicts
        )
        flag = pl.col(SOURCE_ROW).is_in(rows.get_column(SOURCE_ROW).implode())
        return frame.select(SOURCE_ROW, flag.alias(IS_CONFLICTING_DUPLICATE)).collect()
    raise ValueError(f"unknown derived column {column!r} in the suite")


# Per column: file index → (rows, non-null values) of the batch, to split GX's counts by file.
ColumnCounts = dict[int, tuple[int, int]]
_Prepared = tuple[list[tuple[Any, list[int]]], str, ColumnCounts, float]


def _run_suite(
    frame: pl.LazyFrame,
    contract: RawContract,
    suite: dict[str, Any],
    parameters: dict[str, Any],
    result_format: dict[str, Any] | None = None,
    conflicts: pl.DataFrame | None = None,
    single_file: bool = False,
) -> tuple[list[Any], dict[str, ColumnCounts], dict[str, float]]:
    """Validate every expectation, one column (and null handling) per batch; results in
    suite order, and each column's counts by file."""
    g = load()
    expectations: list[dict[str, Any]] = suite["expectations"]
    timings = {"prepare_to_pandas": 0.0, "wait_for_prepare": 0.0, "gx_validate": 0.0}
    results: list[Any] = [None] * len(expectations)
    counts: dict[str, ColumnCounts] = {}
    with GX_LOCK:
        batches = _prepared_batches(
            frame, contract, expectations, timings, counts, conflicts, single_file
        )
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
    return results, counts, timings


def _prepared_batches(
    frame: pl.LazyFrame,
    contract: RawContract,
    expectations: list[dict[str, Any]],
    timings: dict[str, float],
    counts: dict[str, ColumnCounts],
    conflicts: pl.DataFrame | None = None,
    single_file: bool = False,
) -> Iterator[tuple[Any, list[int]]]:
    """Each column's pandas batches with the positions of their expectations, in suite order.

    A helper thread reads and prepares the next columns (Polars and Arrow work, mostly
    outside the GIL) while the caller runs GX, which is mostly pure Python, on the current one.
    """
    fields = {f.name: f for f in contract.fields}
    by_column: dict[str, list[int]] = {}
    for position, expectation in enumerate(expectations):
        by_column.setdefault(expectation["kwargs"]["column"], []).append(position)

    def collect(future: Future[_Prepared]) -> list[Any]:
        started = time.perf_counter()
        batches, column, column_counts, prepare_seconds = future.result()
        timings["wait_for_prepare"] += time.perf_counter() - started
        timings["prepare_to_pandas"] += prepare_seconds
        counts[column] = column_counts
        return batches

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="servio-prepare") as pool:
        pending: deque[Future[_Prepared]] = deque()
        for column, positions in by_column.items():
            args = (
                frame,
                fields.get(column),
                column,
                positions,
                expectations,
                conflicts,
                single_file,
            )
            pending.append(pool.submit(_pandas_batches, *args))
            if len(pending) > _PREFETCH_COLUMNS:
                yield from collect(pending.popleft())
        while pending:
            yield from collect(pending.popleft())


def _pandas_batches(
    frame: pl.LazyFrame,
    raw_field: RawField | None,
    column: str,
    positions: list[int],
    expectations: list[dict[str, Any]],
    conflicts: pl.DataFrame | None = None,
    single_file: bool = False,
) -> _Prepared:
    """The one-column pandas batches of one column and the expectations each gets, the
    column's counts by file, timed."""
    started = time.perf_counter()
    if raw_field is None:
        whole = _derived_column(frame, expectations[positions[0]], conflicts)
    else:
        read = frame.select(SOURCE_ROW, column).collect()
        whole = read.with_columns(_as_validated(read.get_column(column)))
    if single_file:  # GX's own counts are the file's: nothing to split
        column_counts = {0: (whole.height, whole.height - whole.get_column(column).null_count())}
    else:
        by_file = (
            whole.group_by(file_of(pl.col(SOURCE_ROW)).alias("_file"))
            .agg(pl.len(), pl.col(column).count())
            .rows()
        )
        column_counts = {int(f): (int(rows), int(present)) for f, rows, present in by_file}
    batches = [
        (_to_pandas(data, column), chosen)
        for data, chosen in _column_batches(whole, positions, expectations)
    ]
    return batches, column, column_counts, time.perf_counter() - started


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
        typed: pl.LazyFrame,
        contract: RawContract,
        *,
        currency: str,
        ingested_at: datetime,
        files: Sequence[str],
        conflicts: pl.DataFrame | None = None,
    ) -> RuleCheck:
        found, results = validate_files(
            typed,
            contract,
            currency=currency,
            ingested_at=ingested_at,
            files=files,
            conflicts=conflicts,
        )
        # The failures become quarantine rows; the results keep only counts and row ids.
        kept = [replace(result, failures=result.failures.clear()) for result in results]
        return RuleCheck(found.select(SOURCE_ROW, "reason_code", "detail"), kept)

    def keep(self, kept: Sequence[Any], path: str) -> str | None:
        write_gx_result(combine_results(list(kept)), path)
        return path
