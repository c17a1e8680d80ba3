"""Format readers: one local export (CSV, csv.gz, JSON Lines, Parquet) as text frames of its
contract columns, in chunks of a bounded number of records.

Unknown columns are dropped here, at the reader's edge, before anything reads them (SPEC §1.2
allows them, and they may hold personal data): CSV columns are selected by header position,
JSON keys outside the contract are never kept, Parquet columns are selected before any
conversion. So an unknown column named like one servio adds (`source_row`, `__malformed__`,
any case) cannot collide, and an unknown type (binary, duration, map, nested) is never cast.

Every frame has `source_row` (the 1-based record number; blank lines are not records) and
one String column per contract column present in the file, plus, where the format has them,
`MALFORMED` (a line that is not a record) and `NOT_TEXT` (contract fields whose value was a
JSON object or array, a nested Parquet value, binary data or invalid Unicode).

A problem with the content raises `FileRejected`, whose detail is servio's own wording:
parser messages quote the text they choke on (personal data, perhaps) and are never passed on.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import polars as pl

from servio.raw.readers.common import FileRejected
from servio.raw.readers.delimited import csv_chunks
from servio.raw.readers.json_lines import json_chunks
from servio.raw.readers.parquet import parquet_chunks

__all__ = ["FORMATS", "FileRejected", "read_chunks"]

FORMATS = (".csv.gz", ".jsonl.gz", ".csv", ".jsonl", ".ndjson", ".parquet")


def read_chunks(
    path: Path, file_format: str, columns: Collection[str], chunk_rows: int
) -> Iterator[pl.DataFrame]:
    """The file's records in frames of at most `chunk_rows` (at least one frame, maybe
    empty), keeping only the `columns` named (the contract's). See the module docstring."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be ≥ 1, got {chunk_rows}")
    wanted = frozenset(columns)
    if file_format in ("csv", "csv.gz"):
        yield from csv_chunks(path, file_format == "csv.gz", wanted, chunk_rows)
    elif file_format in ("jsonl", "ndjson", "jsonl.gz"):
        yield from json_chunks(path, file_format == "jsonl.gz", wanted, chunk_rows)
    elif file_format == "parquet":
        yield from parquet_chunks(path, wanted, chunk_rows)
    else:
        raise FileRejected(
            "unsupported_format",
            f"extension {file_format!r} is not one of {', '.join(f.lstrip('.') for f in FORMATS)}",
        )
