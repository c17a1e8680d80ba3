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

import codecs
import contextlib
import csv
import gzip
import io
import json
import shutil
import tempfile
import zlib
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.tables import RAW_MALFORMED, RAW_NOT_TEXT, RAW_ROW_NUMBER

COPY_BLOCK_BYTES = 8 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024 * 1024
FORMATS = (".csv.gz", ".jsonl.gz", ".csv", ".jsonl", ".ndjson", ".parquet")


class FileRejected(Exception):
    """The whole file is unusable; `code` is the quarantine reason code, `detail` servio's
    own words (rule, column, record number; never a value of a non-contract column)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def read_chunks(
    path: Path, file_format: str, columns: Collection[str], chunk_rows: int
) -> Iterator[pl.DataFrame]:
    """The file's records in frames of at most `chunk_rows` (at least one frame, maybe
    empty), keeping only the `columns` named (the contract's). See the module docstring."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be ≥ 1, got {chunk_rows}")
    wanted = frozenset(columns)
    if file_format in ("csv", "csv.gz"):
        yield from _csv_chunks(path, file_format == "csv.gz", wanted, chunk_rows)
    elif file_format in ("jsonl", "ndjson", "jsonl.gz"):
        yield from _json_chunks(path, file_format == "jsonl.gz", wanted, chunk_rows)
    elif file_format == "parquet":
        yield from _parquet_chunks(path, wanted, chunk_rows)
    else:
        raise FileRejected(
            "unsupported_format",
            f"extension {file_format!r} is not one of "
            f"{', '.join(f.lstrip('.') for f in FORMATS)}",
        )


def _numbered(frame: pl.DataFrame, first_row: int) -> pl.DataFrame:
    return frame.with_row_index(RAW_ROW_NUMBER, offset=first_row).with_columns(
        pl.col(RAW_ROW_NUMBER).cast(pl.Int64)
    )


def _kept_names(names: list[str], wanted: frozenset[str]) -> dict[str, int]:
    """Contract column → its position among `names` (trimmed, lower-cased). A repeated
    contract column is a rejection (which value was meant is unknowable); a repeated or
    empty unknown name is nothing to servio: it is not read."""
    kept: dict[str, int] = {}
    for position, raw_name in enumerate(names):
        name = raw_name.strip().lower()
        if name not in wanted:
            continue
        if name in kept:
            raise FileRejected("duplicate_header", f"column {name!r} appears more than once")
        kept[name] = position
    return kept


def _is_io_error(exc: BaseException) -> bool:
    """An operating-system failure (permission, vanished file, EIO, full disk), as opposed to
    a library's OSError about the content (gzip, pyarrow: no errno)."""
    return isinstance(exc, OSError) and exc.errno is not None


# ---------------------------------------------------------------------------------------
# CSV


def _csv_chunks(
    path: Path, compressed: bool, wanted: frozenset[str], chunk_rows: int
) -> Iterator[pl.DataFrame]:
    with _plain_csv(path, compressed) as plain:
        names = _csv_header(plain)
        kept = _kept_names(names, wanted)
        positional = [f"_c{i}" for i in range(len(names))]
        records = (
            pl.scan_csv(
                plain,
                glob=False,  # `[`, `*`, `?` in a file name are characters, not a pattern
                has_header=True,
                new_columns=positional,
                infer_schema=False,
                encoding="utf8",
            )
            # A blank line (or one of empty fields only) carries nothing: it is not a record.
            .filter(~pl.all_horizontal(pl.all().is_null()))
            .select(pl.col(positional[i]).alias(name) for name, i in kept.items())
            .with_row_index(RAW_ROW_NUMBER, offset=1)
        )
        produced = False
        try:
            for batch in records.collect_batches(chunk_size=chunk_rows, maintain_order=True):
                typed = batch.with_columns(pl.col(RAW_ROW_NUMBER).cast(pl.Int64))
                for offset in range(0, typed.height, chunk_rows):  # a batch may be bigger
                    produced = True
                    yield typed.slice(offset, chunk_rows)
        except pl.exceptions.NoDataError:
            pass
        except pl.exceptions.PolarsError as exc:
            raise _csv_rejection(plain, len(names), exc) from None
        if not produced:
            yield pl.DataFrame(
                schema={RAW_ROW_NUMBER: pl.Int64, **dict.fromkeys(kept, pl.String)}
            )


def _csv_header(path: Path) -> list[str]:
    """The first line's fields, parsed by the same parser as the records (no field limit)."""
    with path.open("rb") as handle:
        line = handle.readline(MAX_HEADER_BYTES + 1)
    if len(line) > MAX_HEADER_BYTES:
        raise FileRejected(
            "no_header", f"the first line is longer than {MAX_HEADER_BYTES:,} bytes: not a header"
        )
    names: list[str] = []
    if line.strip(b"\r\n\xef\xbb\xbf"):
        try:
            first = pl.read_csv(
                io.BytesIO(line), has_header=False, infer_schema=False, encoding="utf8"
            )
        except pl.exceptions.PolarsError as exc:
            raise _csv_rejection(path, None, exc) from None
        if first.height:
            names = ["" if value is None else str(value) for value in first.row(0)]
    if not any(name.strip() for name in names):
        raise FileRejected("no_header", "the file is empty or its first line is not a header")
    return names


def _csv_rejection(path: Path, columns: int | None, exc: Exception) -> Exception:
    """Polars' message quotes the text it choked on: servio says what and where itself. When
    Python's own CSV reading finds nothing wrong either, the failure is servio's, not the
    file's: the Polars error goes on (the file's boundary makes it `internal_error`, which is
    retried rather than remembered)."""
    if "utf-8" in str(exc).lower() or "utf8" in str(exc).lower():
        invalid = _utf8_problem(path)
        if invalid is not None:  # else the message merely quoted "utf8" in some cell
            return FileRejected("encoding", invalid)
    problem = _csv_problem(path, columns)
    if problem is None:
        return RuntimeError(f"the CSV reader failed ({type(exc).__name__}) where the file is valid")
    return FileRejected("malformed_csv", problem)


def _utf8_problem(path: Path) -> str | None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, offset = 1, 0
    with path.open("rb") as handle:
        while block := handle.read(COPY_BLOCK_BYTES):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                at = offset + max(exc.start, 0)
                line += block[: max(exc.start, 0)].count(b"\n")
                return f"not UTF-8 text: invalid byte sequence at byte {at} (line {line})"
            line += block.count(b"\n")
            offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return f"not UTF-8 text: the file ends inside a character (byte {offset})"
    return None


def _csv_problem(path: Path, columns: int | None) -> str | None:
    """Where the file stops being RFC 4180 CSV (record and line), without quoting it."""
    # The module's default limit (128 KiB a field) would hide the real problem behind a long
    # field; raising the process-wide limit only lifts a memory guard.
    csv.field_size_limit(1 << 30)
    record = previous_line = 0
    try:
        with path.open(encoding="utf-8-sig", newline="", errors="replace") as handle:
            reader = csv.reader(handle, strict=True)
            for fields in reader:
                if not any(fields):  # blank lines are not records (as for the reader)
                    previous_line = reader.line_num
                    continue
                if record and columns is not None and len(fields) > columns:
                    return (
                        f"record {record} (line {previous_line + 1}) has {len(fields)} fields, "
                        f"the header {columns}"
                    )
                record += 1
                previous_line = reader.line_num
    except csv.Error as exc:
        where = f"record {record} (from line {previous_line + 1})"
        if "unexpected end of data" in str(exc):
            return f"{where}: a quoted field is never closed"
        if "expected after" in str(exc):
            return f"{where}: text follows a closing quote inside a field"
        return f"{where}: not RFC 4180 CSV"
    return None


@contextlib.contextmanager
def _plain_csv(path: Path, compressed: bool) -> Iterator[Path]:
    """The export as an uncompressed file with `\\n` or `\\r\\n` line ends: csv.gz is
    decompressed, and a classic-Mac file (`\\r` only, which Polars does not split on) is
    rewritten with `\\n`, both into a temporary file that is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="servio-csv-") as scratch:
        if compressed:
            unpacked = Path(scratch) / "export.csv"
            _gunzip(path, unpacked)
            path = unpacked
        if _ends_lines_with_cr_only(path):
            rewritten = Path(scratch) / "export-lf.csv"
            _cr_to_lf(path, rewritten)
            path = rewritten
        yield path


def _gunzip(path: Path, target: Path) -> None:
    try:
        with gzip.open(path, "rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, COPY_BLOCK_BYTES)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FileRejected(
            "unreadable", f"not a complete gzip file ({type(exc).__name__})"
        ) from None
    except OSError as exc:
        if _is_io_error(exc):
            raise
        raise FileRejected(
            "unreadable", f"not a complete gzip file ({type(exc).__name__})"
        ) from None


def _ends_lines_with_cr_only(path: Path) -> bool:
    """The first line ends in a bare `\\r`."""
    with path.open("rb") as handle:
        while block := handle.read(64 * 1024):
            newline, carriage = block.find(b"\n"), block.find(b"\r")
            if carriage == -1:
                if newline != -1:
                    return False
                continue
            if newline != -1 and newline < carriage:
                return False
            following = block[carriage + 1 : carriage + 2] or handle.read(1)
            return following != b"\n"
    return False


def _cr_to_lf(source: Path, target: Path) -> None:
    with source.open("rb") as inp, target.open("wb") as out:
        carry = b""
        while block := inp.read(COPY_BLOCK_BYTES):
            data = carry + block
            carry = b""
            if data.endswith(b"\r"):  # its `\n` may open the next block
                data, carry = data[:-1], b"\r"
            out.write(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        out.write(carry.replace(b"\r", b"\n"))


# ---------------------------------------------------------------------------------------
# JSON Lines


def _json_chunks(
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
            yield _numbered(_records_frame(batch, names), offset)
            offset += len(batch)
            batch = []
    if batch or offset == 1:
        yield _numbered(_records_frame(batch, names), offset)


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
        if _is_io_error(exc):
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


# ---------------------------------------------------------------------------------------
# Parquet


def _parquet_chunks(path: Path, wanted: frozenset[str], chunk_rows: int) -> Iterator[pl.DataFrame]:
    """Parquet streamed by record batch (pyarrow), contract columns only, each converted to
    text from its Arrow type; batches are gathered into frames of `chunk_rows`."""
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
    except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
        if _is_io_error(exc):
            raise
        raise FileRejected(
            "unreadable", f"not a readable Parquet file ({type(exc).__name__})"
        ) from None
    kept = _kept_names(names, wanted)
    if not kept:  # no contract column at all: the header check rejects the file
        yield pl.DataFrame(schema={RAW_ROW_NUMBER: pl.Int64})
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
                yield _numbered(whole.slice(0, chunk_rows), offset)
                produced = True
                offset += chunk_rows
                rest = whole.slice(chunk_rows)
                pending, pending_rows = ([rest] if rest.height else []), rest.height
    except FileRejected:
        raise
    except Exception as exc:
        if _is_io_error(exc):
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
        yield _numbered(frame, offset)


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
