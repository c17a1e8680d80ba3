"""How the staged rows of a source reach Great Expectations as one batch, and how GX's
results come back per file — pure Polars and pandas, no GX import (`validation.gx` runs GX).

The rows of many files share one batch: each row's id carries its file's index in the high
bits (`validation.rules.FILE_BITS`), so the failures and GX's results are split by file after
one GX run (`split_by_file`, `failures_by_file`). How a column reaches GX (1.24, pandas
execution engine, no Polars support), and why:

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
- The columns are read from the batch in groups (`READ_CELLS` values at most, so a 1 M-row
  batch is read in a few passes and a small one in one, not once per column: a batch of staged
  Parquet parts opens every part at each read), and a helper thread reads and converts the
  next columns (Polars, Arrow) while GX, mostly pure Python, validates the current one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import polars as pl

from servio.schemas.raw import SOURCE_ROW, RawContract, RawField
from servio.schemas.suites import HAS_ANSWER, IS_CONFLICTING_DUPLICATE, NOT_NULL
from servio.validation.results import file_expectation
from servio.validation.rules import FILE_BITS, conflicting_rows, file_of, record_of

_PREFETCH_COLUMNS = 2  # columns converted ahead of GX; bounds the memory held in pandas
# Values (rows × columns) read from the batch at once: one read of a group of columns instead
# of one per column (a batch of staged Parquet parts is opened once per read), still bounded.
READ_CELLS = 8_000_000

# Per column: file index → (rows, non-null values) of the batch, to split GX's counts by file.
ColumnCounts = dict[int, tuple[int, int]]
_Prepared = tuple[list[tuple[Any, list[int]]], str, ColumnCounts, float]


# ---------------------------------------------------------------------------------------
# the batch → one-column pandas batches


def prepared_batches(
    frame: pl.LazyFrame,
    contract: RawContract,
    expectations: list[dict[str, Any]],
    timings: dict[str, float],
    counts: dict[str, ColumnCounts],
    conflicts: pl.DataFrame | None = None,
    single_file: bool = False,
) -> Iterator[tuple[Any, list[int]]]:
    """Each column's pandas batches with the positions of their expectations, in suite order;
    each column's counts by file go into `counts`, the time spent into `timings`.

    Columns are read in groups of up to `READ_CELLS` values (`read_groups`). A helper thread
    reads and prepares the next columns (Polars and Arrow work, mostly outside the GIL) while
    the caller runs GX, which is mostly pure Python, on the current one.
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
        for group in read_groups(frame, list(by_column), fields):
            shared = _GroupRead(frame, group) if group[0] in fields else None
            for column in group:
                args = (frame, shared, column, by_column[column], expectations, conflicts)
                pending.append(pool.submit(_pandas_batches, *args, single_file))
                if len(pending) > _PREFETCH_COLUMNS:
                    yield from collect(pending.popleft())
        while pending:
            yield from collect(pending.popleft())


def read_groups(
    frame: pl.LazyFrame, columns: list[str], fields: dict[str, RawField]
) -> list[list[str]]:
    """The columns in suite order, in groups read together: consecutive contract columns,
    up to `READ_CELLS` values a group (at least one column); a derived column alone. The
    first group is one column, so that GX starts while the next group is read."""
    rows = int(frame.select(pl.len()).collect().item())
    width = max(1, READ_CELLS // max(rows, 1))
    groups: list[list[str]] = []
    for column in columns:
        if column not in fields:
            groups.append([column])
        elif len(groups) > 1 and groups[-1][0] in fields and len(groups[-1]) < width:
            groups[-1].append(column)
        else:
            groups.append([column])
    return groups


class _GroupRead:
    """One read of a group of contract columns, made by the first of its columns' jobs (the
    helper thread runs them one after another) and dropped when the last has taken its own."""

    def __init__(self, frame: pl.LazyFrame, columns: list[str]) -> None:
        self.frame = frame
        self.columns = list(columns)
        self.left = set(columns)
        self.read: pl.DataFrame | None = None

    def take(self, column: str) -> pl.DataFrame:
        """`source_row` and the column, as GX sees it."""
        read = self.read
        if read is None:
            read = self.read = self.frame.select(SOURCE_ROW, *self.columns).collect()
        self.left.discard(column)
        if not self.left:
            self.read = None
        return pl.DataFrame([read.get_column(SOURCE_ROW), _as_validated(read.get_column(column))])


def _pandas_batches(
    frame: pl.LazyFrame,
    shared: _GroupRead | None,
    column: str,
    positions: list[int],
    expectations: list[dict[str, Any]],
    conflicts: pl.DataFrame | None = None,
    single_file: bool = False,
) -> _Prepared:
    """The one-column pandas batches of one column and the expectations each gets, the
    column's counts by file, timed. A contract column comes from its group's read, a derived
    column from `frame`."""
    started = time.perf_counter()
    if shared is None:
        whole = _derived_column(frame, expectations[positions[0]], conflicts)
    else:
        whole = shared.take(column)
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


# ---------------------------------------------------------------------------------------
# GX's results → per file


def unexpected_rows(result: Any) -> list[int]:
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


def detail_columns(
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


def split_by_file(
    expectations: list[dict[str, Any]],
    gx_results: list[Any],
    row_ids: list[list[int]],
    counts: dict[str, ColumnCounts],
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


def failures_by_file(found: pl.DataFrame, files: int) -> list[pl.DataFrame]:
    """Each file's failures of the batch, in its own record numbers."""
    return [
        found.filter(file_of(pl.col(SOURCE_ROW)) == index).with_columns(
            record_of(pl.col(SOURCE_ROW)).alias(SOURCE_ROW)
        )
        for index in range(files)
    ]
