"""CSV and csv.gz: RFC 4180 text, header by position, streamed by Polars in chunks."""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from servio.raw.readers.common import COPY_BLOCK_BYTES, FileRejected, is_io_error, kept_names
from servio.schemas.raw import SOURCE_ROW

MAX_HEADER_BYTES = 16 * 1024 * 1024


def csv_chunks(
    path: Path, compressed: bool, wanted: frozenset[str], chunk_rows: int
) -> Iterator[pl.DataFrame]:
    with _plain_csv(path, compressed) as plain:
        names = _csv_header(plain)
        kept = kept_names(names, wanted)
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
            .with_row_index(SOURCE_ROW, offset=1)
        )
        produced = False
        try:
            for batch in records.collect_batches(chunk_size=chunk_rows, maintain_order=True):
                typed = batch.with_columns(pl.col(SOURCE_ROW).cast(pl.Int64))
                for offset in range(0, typed.height, chunk_rows):  # a batch may be bigger
                    produced = True
                    yield typed.slice(offset, chunk_rows)
        except pl.exceptions.NoDataError:
            pass
        except pl.exceptions.PolarsError as exc:
            raise _csv_rejection(plain, len(names), exc) from None
        if not produced:
            yield pl.DataFrame(schema={SOURCE_ROW: pl.Int64, **dict.fromkeys(kept, pl.String)})


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
    decompressed, and a file with any bare `\\r` line end (classic Mac, or mixed; Polars does
    not split on it) is rewritten with `\\n`, both into a temporary file that is removed
    afterwards."""
    with tempfile.TemporaryDirectory(prefix="servio-csv-") as scratch:
        if compressed:
            unpacked = Path(scratch) / "export.csv"
            _gunzip(path, unpacked)
            path = unpacked
        if _has_bare_cr(path):
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
        if is_io_error(exc):
            raise
        raise FileRejected(
            "unreadable", f"not a complete gzip file ({type(exc).__name__})"
        ) from None


def _has_bare_cr(path: Path) -> bool:
    """Some line ends in a bare `\\r` (a classic-Mac file, or one that mixes line ends):
    Python's csv module and RFC 4180 readers end a record there, Polars does not."""
    with path.open("rb") as handle:
        after_cr = False  # the last block ended in `\r`: its `\n` may open this one
        while block := handle.read(COPY_BLOCK_BYTES):
            if after_cr and not block.startswith(b"\n"):
                return True
            after_cr = block.endswith(b"\r")
            if b"\r" in block and block.count(b"\r") - block.count(b"\r\n") > after_cr:
                return True
        return after_cr  # the file ends in a bare `\r`: harmless, but rewritten alike


def _cr_to_lf(source: Path, target: Path) -> None:
    """Every line end outside a quoted field becomes `\\n`; a quoted field keeps its text
    (a `\\r` in a quoted header name or value is data, not a line end)."""
    quoted = False  # the stream is inside a quoted field (`""` toggles twice)
    with source.open("rb") as inp, target.open("wb") as out:
        carry = b""
        while block := inp.read(COPY_BLOCK_BYTES):
            data = carry + block
            carry = b""
            if data.endswith(b"\r"):  # its `\n` may open the next block
                data, carry = data[:-1], b"\r"
            pieces = data.split(b'"')
            out.write(
                b'"'.join(
                    piece if quoted == (k % 2 == 0) else _lf(piece)
                    for k, piece in enumerate(pieces)
                )
            )
            quoted ^= len(pieces) % 2 == 0
        out.write(carry if quoted else _lf(carry))


def _lf(text: bytes) -> bytes:
    return text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
