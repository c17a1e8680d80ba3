"""JSON Lines (jsonl, ndjson, jsonl.gz): one object per line, contract keys only."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from servio.raw.readers.common import FileRejected, is_io_error, numbered
from servio.schemas.raw import RAW_MALFORMED, RAW_NOT_TEXT


def json_chunks(
    path: Path, compressed: bool, wanted: frozenset[str], chunk_rows: int
) -> Iterator[pl.DataFrame]:
    """Two passes: the contract fields present anywhere in the file first (so every frame
    has the whole file's columns), then the records."""
    present: set[str] = set()
    for record in _json_records(path, compressed, wanted):
        present.update(record)
    names = [n for n in sorted(present) if n not in (RAW_MALFORMED, RAW_NOT_TEXT)]
    offset = 1
    batch: list[dict[str, str | None]] = []
    for record in _json_records(path, compressed, wanted):
        batch.append(record)
        if len(batch) == chunk_rows:
            yield numbered(_records_frame(batch, names), offset)
            offset += len(batch)
            batch = []
    if batch or offset == 1:
        yield numbered(_records_frame(batch, names), offset)


def _records_frame(records: list[dict[str, str | None]], names: list[str]) -> pl.DataFrame:
    columns = [*names, RAW_MALFORMED, RAW_NOT_TEXT]
    return pl.DataFrame(
        {name: [record.get(name) for record in records] for name in columns},
        schema=dict.fromkeys(columns, pl.String),
    )


def _json_records(
    path: Path, compressed: bool, wanted: frozenset[str]
) -> Iterator[dict[str, str | None]]:
    opener = gzip.open if compressed else open
    line_number = 0
    try:
        with opener(path, "rt", encoding="utf-8-sig") as handle:
            for line_number, line in enumerate(handle, start=1):  # noqa: B007
                if line.strip():
                    yield _json_record(line, wanted)
    except UnicodeDecodeError:
        raise FileRejected(
            "encoding", f"not UTF-8 text: invalid byte sequence after line {line_number}"
        ) from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FileRejected(
            "unreadable", f"not a complete gzip file ({type(exc).__name__})"
        ) from None
    except OSError as exc:
        if is_io_error(exc):
            raise
        raise FileRejected("unreadable", f"cannot be read ({type(exc).__name__})") from None


def _json_record(line: str, wanted: frozenset[str]) -> dict[str, str | None]:
    """One line as a record of contract fields. Numbers keep their text (decimals are
    parsed exactly later; an integer of 5,000 digits is text, not a Python int)."""
    try:
        obj = json.loads(
            line,
            object_pairs_hook=_pairs,
            parse_int=str,
            parse_float=str,
            parse_constant=str,
        )
    except json.JSONDecodeError as exc:
        return {RAW_MALFORMED: f"not valid JSON ({exc.msg} at column {exc.colno})"}
    except RecursionError:
        return {RAW_MALFORMED: "not valid JSON (nested too deeply)"}
    except ValueError:
        return {RAW_MALFORMED: "not valid JSON"}
    if not line.lstrip().startswith("{"):  # arrays and scalars are not records
        return {RAW_MALFORMED: "a JSON line must be an object"}
    record: dict[str, str | None] = {}
    not_text: list[str] = []
    for key, value in obj:
        name = key.strip().lower()
        if name not in wanted:
            continue  # unknown keys are never read (their values may be personal data)
        if name in record:
            # {"nps": 9, "nps": 2}: which value the exporter meant is unknowable.
            return {RAW_MALFORMED: f"key {name!r} appears more than once"}
        is_text, text = _json_text(value)
        record[name] = text
        if not is_text:
            not_text.append(name)
    if not_text:
        record[RAW_NOT_TEXT] = ";".join(not_text)
    return record


def _pairs(pairs: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Keep a JSON object's key/value pairs as written, so repeated keys can be seen."""
    return pairs


def _json_text(value: object) -> tuple[bool, str | None]:
    """(is it text, the text). Objects (lists of pairs here) and arrays are not text, nor is
    a string holding a lone surrogate escape ("\\ud800"), which no UTF-8 file can store."""
    if value is None:
        return True, None
    if isinstance(value, bool):
        return True, "true" if value else "false"
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return False, None
        return True, value
    return False, None
