"""The Great Expectations suite of a raw contract, run on a standardised frame (SPEC §3): the
only module that imports great_expectations (lazily: it costs seconds); `GxValidator` is the
`Validator` staging uses by default.

`validate_rows` runs the suite of `schemas/suites/` on one file's frame and returns one failure
row per (row, broken rule); `validate_files` does the same for the rows of many files in one
batch (`validation.batch` prepares the batch and splits the results back per file). A big file
is validated chunk by chunk: `conflicting_rows` over the whole file is computed first and handed
to each chunk's `validate_rows`, and `combine_results` makes one result per file.

How GX is run (GX 1.24, pandas execution engine; `validation.batch` says how the columns reach
it), and why:

- GX fingerprints every in-memory batch under 1 GB with `pandas.util.hash_pandas_object`, which
  costs ~25 s per million Arrow-backed rows and is only batch metadata: it is switched off
  (`pandas_execution_engine.HASH_THRESHOLD = 0`) for this process.
- One COMPLETE pass (`exclude_unexpected_values`, no index query) gives counts and failing ids
  together: with the one-column batches a first BOOLEAN_ONLY pass costs nearly as much as this
  one (see `benchmarks/validation_overhead.py`), so a second pass for the ids would only add.
  The kept GX results are trimmed to 20 row ids per expectation for the Data Docs; every id is
  in `failures`.

- GX reads an expectation's `configuration` about 150 times while it validates it (building
  the metric graph, twice), and each read rebuilds it from the pydantic model: at 1 M rows
  that was a third of GX's fixed cost per expectation. While servio validates (under
  `GX_LOCK`, which every GX use in servio takes) the property returns the configuration
  built the first time for that expectation object; GX builds a new object for each
  validation and nothing in GX 1.24 changes an expectation or its configuration meanwhile.

Great Expectations is imported lazily (it costs seconds); one ephemeral context serves the
process, and validations take turns on it (a lock), since its batch bookkeeping is shared.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.abc
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from servio.schemas.raw import SOURCE_ROW, RawContract
from servio.schemas.suites import PARAM_LATEST_ALLOWED_AT, PARAM_REPORTING_CURRENCIES, load_suite
from servio.validation.batch import (
    ColumnCounts,
    detail_columns,
    failures_by_file,
    prepared_batches,
    split_by_file,
    unexpected_rows,
)
from servio.validation.results import (
    DOCS_ROW_IDS,
    ValidationResult,
    combine_results,
    suite_result,
    summary_of,
    write_gx_result,
)
from servio.validation.rules import DetailContext, RuleCheck, failures

log = logging.getLogger("servio.validation.gx")

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
_suites_run = 0  # `suites_run()`
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


_loading: threading.Thread | None = None  # `load_in_background`, once per process
_LOADING_LOCK = threading.Lock()


def load_in_background() -> None:
    """Start `load()` on a thread of its own, once per process: GX's import (~1.4 CPU-s, pure
    Python) then overlaps the reading of the files, which is mostly Polars' native threads
    (with the lazier import of `_importing_gx`, the 1M benchmark's check_files went from
    9.4 to 5.0–5.6 s). A `load()` meanwhile waits for it on `GX_LOCK`, and runs it again if
    it failed. Not a daemon: a process that finishes sooner waits for the import to end
    rather than exit in the middle of one."""
    global _loading
    with _LOADING_LOCK:
        if _GX is not None or _loading is not None:
            return
        _loading = threading.Thread(target=_load_or_leave, name="servio-gx-load")
        _loading.start()


def _load_or_leave() -> None:
    try:
        load()
    except Exception:  # the first check's own load() raises it again, where it is reported
        log.debug("loading Great Expectations in the background failed", exc_info=True)


def _loadload() -> _Gx:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with _importing_gx():
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0  # see the module docstring
    # This GX module pins its logger to INFO on import ("Created temporary directory…").
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = ephemeral_context(gx, ProgressBarsConfig)
    asset = context.data_sources.add_pandas("servio_raw").add_dataframe_asset("standardised")
    return _Gx(gx, context, asset.add_batch_definition_whole_dataframe("one_column"))


# Installed here but never used by servio's GX, which validates pandas batches and renders
# its Data Docs to a local folder: PySpark (the `spark` extra, for a BI reader test),
# SQLAlchemy (Prefect's server) and boto3 (s3fs's botocore). GX imports each that is installed.
UNUSED_BY_GX = ("pyspark", "sqlalchemy", "boto3", "botocore")
# Imported at the top of GX modules that servio's suites never reach (the KL-divergence and
# KS-test expectations and metrics): loaded lazily, on their first attribute access.
LAZY_FOR_GX = ("scipy.stats", "altair")


class _GxImportFinder(importlib.abc.MetaPathFinder):
    """First on `sys.meta_path` while GX is imported; acts on the importing thread's imports
    only (GX may be imported on a thread of its own while others import what they need):
    the packages of UNUSED_BY_GX are not found, those of LAZY_FOR_GX get a lazy loader."""

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self.hidden = {name for name in UNUSED_BY_GX if name not in sys.modules}

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if threading.current_thread() is not self.thread:
            return None
        if name.partition(".")[0] in self.hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden from GX)", name=name)
        if name not in LAZY_FOR_GX:
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


@contextlib.contextmanager
def _importing_gx() -> Iterator[None]:
    """While GX is imported, the packages of UNUSED_BY_GX that this process has not imported
    fail to import on the importing thread, as if they were not installed; those of
    LAZY_FOR_GX are imported lazily; and the cyclic garbage collector pauses.

    - Hidden, PySpark costs no import (~0.3 s), no pandas-3 warning, and no exit: PySpark's
      import quits a process whose `__main__` has neither a spec nor a file, which is how a
      Dask worker starts. SQLAlchemy costs no import either (~0.35 s), nor GX's SQL data
      sources; boto3 and botocore ~0.3 s. A process that imported one before keeps it, and
      so does GX.
    - Lazy, scipy.stats and altair (with jsonschema) cost nothing until used: ~1.2 s less. A
      lazy module is executed whole on its first attribute access, in whichever thread makes
      it (servio's report imports altair: then).
    - GX's import creates a few hundred thousand objects, and each full collection meanwhile
      walks every object of the process (Prefect, Polars: most of a warm process): paused,
      the import takes ~0.5–1 of its ~4–5 CPU-s less (measured in a process that imported
      servio's flows first). Its garbage is left to the next collection."""
    finder = _GxImportFinder()
    sys.meta_path.insert(0, finder)
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
        sys.meta_path.remove(finder)


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
    row_ids = [unexpected_rows(result) for result in gx_results]
    context = DetailContext(currency, latest_allowed_at)
    all_ids = sorted({row for ids in row_ids for row in ids})
    failing = (
        frame.select(detail_columns(expectations, row_ids, names))
        .filter(pl.col(SOURCE_ROW).is_in(pl.Series(all_ids, dtype=pl.Int64).implode()))
        .collect()
    )
    found = failures(failing, expectations, row_ids, context, conflicts)
    by_file = split_by_file(expectations, gx_results, row_ids, counts, len(files))
    results = []
    for label, mine, file_results in zip(
        files, failures_by_file(found, len(files)), by_file, strict=True
    ):
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


def _check_input(names: list[str], contract: RawContract, ingested_at: datetime) -> None:
    missing = [c for c in (SOURCE_ROW, *contract.names) if c not in names]
    if missing:
        raise ValueError(f"{contract.source} frame lacks column(s): {', '.join(missing)}")
    if ingested_at.tzinfo is None:
        raise ValueError("ingested_at must be timezone-aware")


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
    with GX_LOCK, _configurations_computed_once():
        global _suites_run
        _suites_run += 1
        batches = prepared_batches(
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


@contextlib.contextmanager
def _configurations_computed_once() -> Iterator[None]:
    """While servio validates, an expectation's `configuration` is built once per expectation
    object instead of at every read (see the module docstring); restored afterwards."""
    from great_expectations.expectations.expectation import Expectation

    built = Expectation.__dict__.get("configuration")
    if not isinstance(built, property) or built.fget is None:  # another GX: leave it alone
        yield
        return
    build = built.fget
    # id → (expectation, configuration); holding the expectation keeps its id unique.
    seen: dict[int, tuple[Any, Any]] = {}

    def configuration(self: Any) -> Any:
        hit = seen.get(id(self))
        if hit is None or hit[0] is not self:
            hit = seen[id(self)] = (self, build(self))
        return hit[1]

    Expectation.configuration = property(configuration, doc=built.__doc__)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Expectation.configuration = built  # type: ignore[method-assign,assignment]


def _raise_if_errored(result: Any, expectation: dict[str, Any]) -> None:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        raise RuntimeError(
            f"GX could not evaluate {expectation['type']} on {expectation['kwargs']['column']}: "
            f"{info.get('exception_message')}"
        )


def suites_run() -> int:
    """How many times this process has run a suite (once per source and batch): where GX
    ran, e.g. on which Dask workers."""
    return _suites_run


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

    def prepare(self) -> None:
        load_in_background()

    def keep(self, kept: Sequence[Any], path: str) -> str | None:
        write_gx_result(combine_results(list(kept)), path)
        return path
