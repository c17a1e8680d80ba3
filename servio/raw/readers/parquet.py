"""Parquet: streamed by record batch (pyarrow), contract columns converted to text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from servio.raw.readers.common import FileRejected, is_io_error, kept_names, numbered
from servio.schemas.raw import RAW_NOT_TEXT, SOURCE_ROW


def parquet_chunks(path: Path, wanted: frozenset[str], chunk_rows: int) -> Iterator[pl.DataFrame]:
    """Parquet streamed by record batch (pyarrow), contract columns only, each converted to
    text from its Arrow type; batches are gathered into frames of `chunk_rows`."""
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
    except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
        if is_io_error(exc):
            raise
        raise FileRejected(
            "unreadable", f"not a readable Parquet file ({type(exc).__name__})"
        ) from None
    kept = kept_names(names, wanted)
    if not kept:  # no contract column at all: the header check rejects the file
        yield pl.DataFrame(schema={SOURCE_ROW: pl.Int64})
        return
    pending: list[pl.DataFrame] = []
    pending_rows = 0
    offset = 1
    produced = False
    try:
        batches = parquet.iter_batches(
            batch_size=min(chunk_rows, 1 << 20), columns=[names[i] for i in kept.values()]
        )
        for batch in batches:
            pending.append(_parquet_text(batch, list(kept)))
            pending_rows += batch.num_rows
            while pending_rows >= chunk_rows:
                whole = pl.concat(pending, how="diagonal")
                yield numbered(whole.slice(0, chunk_rows), offset)
                produced = True
                offset += chunk_rows
                rest = whole.slice(chunk_rows)
                pending, pending_rows = ([rest] if rest.height else []), rest.height
    except FileRejected:
        raise
    except Exception as exc:
        if is_io_error(exc):
            raise
        raise FileRejected(
            "unreadable", f"not a readable Parquet file ({type(exc).__name__})"
        ) from None
    if pending_rows or not produced:
        frame = (
            pl.concat(pending, how="diagonal")
            if pending
            else pl.DataFrame(schema={**dict.fromkeys(kept, pl.String), RAW_NOT_TEXT: pl.String})
        )
        yield numbered(frame, offset)


def _parquet_text(batch: pa.RecordBatch, names: list[str]) -> pl.DataFrame:
    columns: dict[str, pl.Series] = {}
    flags: list[pl.Expr] = []
    for name, array in zip(names, batch.columns, strict=True):
        text, not_text = _arrow_text(array)
        columns[name] = text.alias(name)
        if not_text is not None:
            columns[f"__flag_{name}"] = not_text
            flags.append(pl.when(pl.col(f"__flag_{name}")).then(pl.lit(name)))
    frame = pl.DataFrame(columns)
    flag = (
        pl.concat_str(flags, separator=";", ignore_nulls=True).replace("", None)
        if flags
        else pl.lit(None, pl.String)
    )
    return frame.select(*names, flag.alias(RAW_NOT_TEXT))


_TIMESTAMP_TEXT = "%Y-%m-%dT%H:%M:%S%.f"


def _arrow_text(array: pa.Array) -> tuple[pl.Series, pl.Series | None]:
    """(the values as text, which non-null values are not text — None when all are text).

    An aware timestamp keeps its instant (written in UTC with its offset), a naive one stays
    naive; a duration is its number of seconds; nested values, binary that is not UTF-8 and
    types without a text form are flagged, never cast."""
    kind = array.type
    try:
        if pa.types.is_dictionary(kind):
            return _arrow_text(array.dictionary_decode())
        if pa.types.is_null(kind):
            return pl.Series([None] * len(array), dtype=pl.String), None
        if pa.types.is_timestamp(kind):
            if kind.tz is not None:  # any zone, "+02:00" included: same instant in UTC
                utc = pl.Series(array.cast(pa.timestamp(kind.unit, "UTC")))
                return utc.dt.to_string(_TIMESTAMP_TEXT + "%:z"), None
            return pl.Series(array).dt.to_string(_TIMESTAMP_TEXT), None
        if pa.types.is_duration(kind):
            micros = pl.Series(array.cast(pa.duration("us")).cast(pa.int64()))
            return (micros.cast(pl.Float64) / 1e6).cast(pl.String), None
        if pa.types.is_float16(kind):
            return _arrow_text(array.cast(pa.float32()))
        if pa.types.is_decimal(kind) and kind.precision > 38:
            return pl.Series(array.cast(pa.string())), None
        if _is_binary(kind):
            return pl.Series(array.cast(pa.string())), None  # raises unless valid UTF-8
        if _is_text_like(kind):
            return pl.Series(array).cast(pl.String), None
    except (pa.ArrowException, pl.exceptions.PolarsError, ValueError, TypeError, OverflowError):
        pass
    present = pl.Series(array.is_valid())
    return pl.Series([None] * len(array), dtype=pl.String), present


def _is_binary(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
        or pa.types.is_binary_view(kind)
    )


def _is_text_like(kind: pa.DataType) -> bool:
    """Types whose Polars text form is the value: strings, booleans, numbers, dates, times."""
    checks: tuple[Any, ...] = (
        pa.types.is_string,
        pa.types.is_large_string,
        pa.types.is_string_view,
        pa.types.is_boolean,
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_decimal,
        pa.types.is_date,
        pa.types.is_time,
    )
    return any(check(kind) for check in checks)
