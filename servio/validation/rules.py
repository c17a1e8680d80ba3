"""The row rules of a raw contract in plain Polars (SPEC §3), and the seam that runs them.

`Validator` is what staging is given to check a chunk of standardised rows: the Great
Expectations suite (`servio.validation.gx.GxValidator`, the default) or, where the rules are
not under test, `RequiredOnlyValidator`. Both answer with failure rows in
`servio.schemas.raw.FAILURE_SCHEMA`; what a validator keeps for the Data Docs is its own.

The rules that are not per value are here too: conflicting duplicates (rows sharing key and
version time with different content, the one rule spanning rows) and the wording of every
failure's detail, from the suite's own rule text and the offending value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import polars as pl

from servio.schemas.raw import FAILURE_SCHEMA, SOURCE_ROW, RawContract
from servio.schemas.suites import HAS_ANSWER, IS_CONFLICTING_DUPLICATE, load_suite

VALUE_PREVIEW = 40  # characters of a string value quoted in a detail
TIMESTAMP_TEXT = "%Y-%m-%dT%H:%M:%S%.fZ"


# The rows of several files are checked as one batch (the validator's fixed cost is paid once
# per batch, not per file): their `source_row` is then the file's index in the batch in the
# high bits and the record number in the low ones. File 0's ids are its record numbers.
FILE_BITS = 40


def batch_row_id(file_index: int) -> pl.Expr:
    """`source_row` of a file's rows in a batch (see `FILE_BITS`)."""
    return (pl.lit(file_index << FILE_BITS, pl.Int64) + pl.col(SOURCE_ROW)).alias(SOURCE_ROW)


def file_of(row_id: pl.Expr) -> pl.Expr:
    """The file index of a batch row id."""
    return row_id // (1 << FILE_BITS)


def record_of(row_id: pl.Expr) -> pl.Expr:
    """The record number (`source_row` in its file) of a batch row id."""
    return row_id % (1 << FILE_BITS)


@dataclass(frozen=True)
class RuleCheck:
    """A validator's answer for one batch: its failure rows (batch row ids), and what it
    keeps of each file of the batch for the Data Docs (None: nothing), by file index."""

    failures: pl.DataFrame  # FAILURE_SCHEMA: one row per (source_row, broken rule)
    kept: Sequence[Any] = ()


class Validator(Protocol):
    """Checks standardised rows against a contract's rules (SPEC §3)."""

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
        """`typed`: `source_row` (a batch row id, see `FILE_BITS`) and every contract
        column, typed by standardisation; the rows of the files labelled `files` (a file
        may be split over several batches). `conflicts`: `conflicting_rows` of every file
        of the batch over the whole file, in batch row ids (None: find them in `typed`,
        which then holds one whole file)."""
        ...

    def prepare(self) -> None:
        """Begin, in the background, the one-time setup the first `check` of this process
        would otherwise wait for (importing GX); `check` waits for what is left of it. Called
        before each file is read; cheap once started."""
        ...

    def keep(self, kept: Sequence[Any], path: str) -> str | None:
        """Combine what was kept of one file (one entry per batch holding its rows) into
        one and store it at `path` (for the Data Docs); the path, or None when this
        validator keeps nothing."""
        ...


class RequiredOnlyValidator:
    """Only the contract's `required` rule (a null key or partition date cannot be published),
    and nothing kept. For tests and the fault harness, where publishing is under test and not
    the rules: the Great Expectations suite costs about 1.5 s a run and source."""

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
        frames = [
            typed.filter(pl.col(name).is_null()).select(
                SOURCE_ROW,
                pl.lit(f"required:{name}").alias("reason_code"),
                pl.lit(f"{name} is missing").alias("detail"),
            )
            for name in contract.required
        ]
        failures = pl.concat([pl.LazyFrame(schema=FAILURE_SCHEMA), *frames]).collect()
        return RuleCheck(failures, [None] * len(files))

    def prepare(self) -> None:
        pass  # nothing to set up

    def keep(self, kept: Sequence[Any], path: str) -> str | None:
        return None


# ---------------------------------------------------------------------------------------
# conflicting duplicates: the one rule spanning rows


def conflict_recipe(contract: RawContract) -> tuple[str, list[str], list[str]] | None:
    """(key, version columns, content columns) of the suite's conflicting-duplicate rule."""
    for expectation in load_suite(contract)["expectations"]:
        if expectation["kwargs"]["column"] == IS_CONFLICTING_DUPLICATE:
            recipe = expectation["meta"]["derived"]
            return recipe["key"], list(recipe["version"]), list(recipe["content"])
    return None


def version_expr(version: list[str]) -> pl.Expr:
    return pl.coalesce(version) if len(version) > 1 else pl.col(version[0])


def conflicting_rows(
    frame: pl.DataFrame, key: str, version: list[str], content: list[str]
) -> pl.DataFrame:
    """Rows sharing key and version time with a row of different content (see `conflict_recipe`).

    `frame` may hold only candidate rows of a file (every row whose key repeats): the answer is
    the same. Columns: source_row, conflict_rows (the group's record numbers, for the detail).
    Rows whose key or version is null are left to the required rules.
    """
    candidates = frame.filter(_repeated_key(frame.get_column(key))).select(
        SOURCE_ROW,
        key,
        version_expr(version).alias("_version"),
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


def conflicts_in(
    rows: pl.LazyFrame, key: str, version: list[str], content: list[str]
) -> pl.DataFrame:
    """`conflicting_rows` of one whole file that need not fit in memory (its staged parts):
    a 64-bit hash of every key first, then only the rows whose key hash repeats (in a
    normal export, none)."""
    hashes = rows.select(pl.col(key).drop_nulls().hash()).collect().to_series().to_numpy()
    ordered = np.sort(hashes)
    del hashes
    repeated = pl.Series(np.unique(ordered[1:][ordered[1:] == ordered[:-1]]), dtype=pl.UInt64)
    del ordered
    is_candidate = pl.col(key).is_not_null() & pl.col(key).hash().is_in(repeated.implode())
    candidates = (
        rows.filter(is_candidate).select(SOURCE_ROW, *dict.fromkeys([key, *version, *content]))
    ).collect()
    return conflicting_rows(candidates, key, version, content)


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


# ---------------------------------------------------------------------------------------
# failures and their details


@dataclass(frozen=True)
class DetailContext:
    """The runtime values some details quote."""

    currency: str
    latest_allowed_at: datetime


def failures(
    frame: pl.DataFrame,
    expectations: list[dict[str, Any]],
    row_ids: list[list[int]],
    context: DetailContext,
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
                conflicts = conflicting_rows(
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
    context: DetailContext,
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
        return value.dt.to_string(TIMESTAMP_TEXT)
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
        pl.when(value.str.len_chars() > VALUE_PREVIEW)
        .then(value.str.slice(0, VALUE_PREVIEW) + "…")
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
        failing.select(SOURCE_ROW, key, version_expr(version).alias("_version")),
        on=SOURCE_ROW,
        how="left",
    ).join(conflicts, on=SOURCE_ROW, how="left")
    text = pl.format(
        "{}: {} {} at {} has differing rows {}",
        pl.lit(expectation["meta"]["rule"]),
        pl.lit(key),
        _quoted(pl.col(key)),
        pl.col("_version").dt.to_string(TIMESTAMP_TEXT),
        pl.col("conflict_rows").cast(pl.List(pl.String)).list.join(", "),
    )
    return joined.with_columns(text.alias("detail"))
