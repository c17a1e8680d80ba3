"""Export files: how each file of a source is laid out, and how a typed frame is rendered as
the text or Parquet a source system would export."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from servio.tools.generate.business import BOOLEAN_SPELLINGS, TIMESTAMP_STYLES
from servio.tools.generate.defects import Defect, Value
from servio.tools.generate.options import CSV_FORMATS, MAX_ROWS_PER_FILE, Int

# Export files: how each file of a source is laid out


@dataclass(frozen=True)
class ExportFile:
    """One export file: where it goes, which columns it carries and its dialect quirks."""

    source: str
    name: str
    fmt: str
    columns: tuple[str, ...]  # contract + personal columns it carries, in file order
    bom: bool = False
    messy_header: bool = False  # header names in odd case and spacing, CRLF line ends
    extra: tuple[tuple[str, str], ...] = ()  # unknown columns and their constant value
    native_booleans: bool = True  # JSON booleans rather than spelled-out text
    naive_parquet_timestamps: bool = False

    @property
    def path(self) -> str:
        return f"{self.source}/{self.name}.{self.fmt}"


def _file_dialects(
    source: str, count: int, formats: tuple[str, ...], offset: int
) -> list[dict[str, Any]]:
    """Format and dialect of each of `count` files: formats rotate; quirks go to one file each."""
    fmts = [formats[(i + offset) % len(formats)] for i in range(count)]
    csv_files = [i for i, f in enumerate(fmts) if f in CSV_FORMATS]
    bom = csv_files[0] if csv_files else None
    messy = csv_files[-1] if csv_files else None
    return [
        {
            "fmt": fmts[i],
            "bom": i == bom,
            "messy_header": i == messy,
            "native_booleans": i % 2 == 0,
            "naive_parquet_timestamps": i % 2 == 1,
            "extra": (("source_system", "crm-eu-1"),) if i % 2 == 1 else (),
        }
        for i in range(count)
    ]


def _file_count(rows: int, days: int, formats: tuple[str, ...]) -> int:
    """About one export per month, at least one per format, at most MAX_ROWS_PER_FILE rows each."""
    return max(len(formats), math.ceil(days / 30), math.ceil(rows / MAX_ROWS_PER_FILE), 1)


def _split(n: int, files: int) -> Int:
    """Start offsets of `files` contiguous, nearly equal chunks of n rows (and n at the end)."""
    return np.array([(n * i) // files for i in range(files + 1)], dtype=np.int64)


def _messy_header(names: Sequence[str]) -> dict[str, str]:
    """Header names as a hand-edited export has them: padded, capitalised, shouting."""

    def messy(position: int, name: str) -> str:
        if "_" not in name:
            return f" {name.capitalize()} "
        return name.upper() if position % 2 else "_".join(p.capitalize() for p in name.split("_"))

    return {name: messy(i, name) for i, name in enumerate(names)}


# ---------------------------------------------------------------------------------------------
# Rendering: typed frame → the text or Parquet a source system would export


def _timestamp_text(column: str) -> pl.Expr:
    """ISO-8601 in the row's style: Z, an offset (same instant) or naive (UTC)."""
    styles = list(range(len(TIMESTAMP_STYLES)))
    offsets = pl.col("_ts_style").replace_strict(
        styles, [seconds for _, seconds in TIMESTAMP_STYLES], return_dtype=pl.Int64
    )
    suffix = pl.col("_ts_style").replace_strict(
        styles, [text for text, _ in TIMESTAMP_STYLES], return_dtype=pl.String
    )
    local = (pl.col(column) + pl.duration(seconds=offsets)).dt.strftime("%Y-%m-%dT%H:%M:%S")
    return (local + suffix).alias(column)


def _boolean_text(column: str) -> pl.Expr:
    spelled = [s for pair in BOOLEAN_SPELLINGS for s in reversed(pair)]  # false, true per style
    code = pl.col("_bool_style").cast(pl.Int64) * 2 + pl.col(column).cast(pl.Int64)
    return code.replace_strict(list(range(len(spelled))), spelled, return_dtype=pl.String).alias(
        column
    )


def _as_text(value: Value) -> Value:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _with_defects(frame: pl.DataFrame, defects: Sequence[Defect]) -> pl.DataFrame:
    """Overwrite the values each bad row's defect names (`_defect` = index into defects, -1 = none)."""
    present = sorted({int(k) for k in frame["_defect"].unique() if k is not None and k >= 0})
    if not present:
        return frame
    by_column: dict[str, list[tuple[int, Value]]] = {}
    for k in present:
        for column, value in defects[k].values.items():
            if column in frame.columns:
                by_column.setdefault(column, []).append((k, value))
    updates = []
    for column, changes in by_column.items():
        dtype = frame.schema[column]
        if any(isinstance(v, str) for _, v in changes) and dtype != pl.String:
            frame = frame.with_columns(_text_of(column, dtype))
            dtype = pl.String()
        expr: Any = pl
        for k, value in changes:
            if dtype == pl.String:
                value = _as_text(value)
            elif (
                isinstance(value, datetime)
                and isinstance(dtype, pl.Datetime)
                and dtype.time_zone is None
            ):
                value = value.astimezone(UTC).replace(tzinfo=None)
            literal = value if isinstance(value, pl.Expr) else pl.lit(value, dtype=dtype)
            expr = expr.when(pl.col("_defect") == k).then(literal)
        updates.append(expr.otherwise(pl.col(column)).alias(column))
    return frame.with_columns(updates)


def _text_of(column: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        return pl.col(column).dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias(column)
    return pl.col(column).cast(pl.String).alias(column)


def _render(
    frame: pl.DataFrame,
    spec: ExportFile,
    timestamps: Sequence[str],
    booleans: Sequence[str],
    defects: Sequence[Defect],
) -> pl.DataFrame:
    """The file's columns as its source system would write them."""
    if spec.fmt == "parquet":
        if spec.naive_parquet_timestamps:
            frame = frame.with_columns(pl.col(c).dt.replace_time_zone(None) for c in timestamps)
    else:
        styled = [_timestamp_text(c) for c in timestamps]
        if not (spec.native_booleans and spec.fmt not in CSV_FORMATS):
            styled += [_boolean_text(c) for c in booleans]
        frame = frame.with_columns(styled)
    frame = _with_defects(frame, defects)
    extra = [pl.lit(value).alias(name) for name, value in spec.extra]
    out = frame.select(*spec.columns, *extra)
    if spec.messy_header:
        out = out.select(reversed(out.columns))
        out = out.rename(_messy_header(out.columns))
    return out


def _write(frame: pl.DataFrame, path: Path, spec: ExportFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if spec.fmt in CSV_FORMATS:
        frame.write_csv(
            path,
            include_bom=spec.bom,
            line_terminator="\r\n" if spec.messy_header else "\n",
            compression="gzip" if spec.fmt == "csv.gz" else "uncompressed",
            compression_level=1 if spec.fmt == "csv.gz" else None,
            check_extension=False,
        )
    elif spec.fmt == "parquet":
        frame.write_parquet(path, compression="zstd", compression_level=1, statistics=True)
    else:
        gz = spec.fmt.endswith(".gz")
        frame.write_ndjson(
            path,
            compression="gzip" if gz else "uncompressed",
            compression_level=1 if gz else None,
            check_extension=False,
        )


# ---------------------------------------------------------------------------------------------
