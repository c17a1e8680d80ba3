"""The landing zone (raw root): discover complete exports, hash them, read them as text.

Raw files are only ever read here: never modified, moved or deleted (SPEC §1.1). The raw
root may be `s3://bucket/prefix`: objects are listed and hashed streaming, and an object is
read by downloading it to a local temporary file checked against its hash, then read by the
same readers as a local file (bounded by local disk, not memory).
Every reader returns the same shape: one String column per header (names trimmed and
lower-cased) plus `source_row`, the 1-based record number in the file. `read_raw` returns the
whole file; `read_raw_chunks` the same rows in frames of a bounded number of rows.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl

from servio import objectstore

SOURCES = ("interactions", "surveys")
FORMATS = (".csv.gz", ".jsonl.gz", ".csv", ".jsonl", ".ndjson", ".parquet")
IN_FLIGHT_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
ROW_NUMBER = "source_row"


class FileRejected(Exception):
    """The whole file is unusable; `code` is the quarantine reason code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class LandedFile:
    """A complete file in the landing zone, identified by its content hash."""

    path: str  # absolute, or the object's s3:// URL
    relative_path: str  # to the raw root; what tables and messages show
    source: str  # interactions, surveys, or unknown
    file_format: str  # csv, csv.gz, jsonl, jsonl.gz, ndjson, parquet, or the bad suffix
    size_bytes: int
    sha256: str


def is_in_flight(name: str) -> bool:
    return name.startswith((".", "_")) or name.lower().endswith(IN_FLIGHT_SUFFIXES)


def file_format_of(name: str) -> str | None:
    lower = name.lower()
    return next((fmt.lstrip(".") for fmt in FORMATS if lower.endswith(fmt)), None)


HASH_CHUNK_BYTES = 8 * 1024 * 1024


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return _sha256_stream(handle)


def _sha256_stream(handle: BinaryIO, copy_to: BinaryIO | None = None) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return digest.hexdigest()


def source_of(raw_root: Path, path: Path) -> str:
    """The first folder under the raw root names the source."""
    first = path.relative_to(raw_root).parts[0]
    return first if first in SOURCES else "unknown"


def discover(raw_root: str | Path) -> Iterator[LandedFile]:
    """Every complete file under the raw root, in path order (which sets ingestion order)."""
    if objectstore.is_object_url(raw_root):
        yield from _discover_objects(str(raw_root))
        return
    root = Path(raw_root).resolve()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(is_in_flight(part) for part in relative.parts) or not path.is_file():
            continue
        yield LandedFile(
            path=str(path),
            relative_path=relative.as_posix(),
            source=source_of(root, path) if len(relative.parts) > 1 else "unknown",
            file_format=file_format_of(path.name) or path.suffix.lstrip(".").lower(),
            size_bytes=path.stat().st_size,
            sha256=sha256_of(path),
        )


def _discover_objects(url: str) -> Iterator[LandedFile]:
    """The same rules over an object listing; keys play the part of relative paths."""
    fs, root = objectstore.open_root(url)
    try:
        listing = fs.find(root, detail=True)
    except FileNotFoundError as exc:  # the bucket: s3fs's message does not name it
        raise FileNotFoundError(
            f"{url}: the bucket does not exist or cannot be reached with the AWS settings in use"
        ) from exc
    for key, info in sorted(listing.items()):
        relative = key.removeprefix(root + "/")
        parts = relative.split("/")
        if any(is_in_flight(part) for part in parts) or info.get("type") != "file":
            continue
        with fs.open(key, "rb", block_size=HASH_CHUNK_BYTES) as handle:
            sha256 = _sha256_stream(handle)
        yield LandedFile(
            path=objectstore.to_url(fs, key),
            relative_path=relative,
            source=(parts[0] if parts[0] in SOURCES else "unknown")
            if len(parts) > 1
            else "unknown",
            file_format=file_format_of(parts[-1]) or Path(parts[-1]).suffix.lstrip(".").lower(),
            size_bytes=int(info["size"]),
            sha256=sha256,
        )


def _normalised(names: list[str]) -> list[str]:
    normal = [name.strip().lower() for name in names]
    seen: set[str] = set()
    for name in normal:
        if name in seen:
            raise FileRejected("duplicate_header", f"column {name!r} appears more than once")
        seen.add(name)
    return normal


def _csv_header(path: Path, compressed: bool) -> list[str]:
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(io.StringIO(handle.readline())), None)
    except UnicodeDecodeError as exc:
        raise FileRejected(
            "encoding", f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise FileRejected("unreadable", f"cannot decompress or read ({exc})") from exc
    if not header or all(not name.strip() for name in header):
        raise FileRejected("no_header", "the file is empty or its first line is not a header")
    return header


def _read_csv(path: Path, compressed: bool) -> pl.DataFrame:
    header = _normalised(_csv_header(path, compressed))
    try:
        frame = pl.read_csv(
            path, infer_schema=False, has_header=True, new_columns=header, encoding="utf8"
        )
    except pl.exceptions.NoDataError:
        return pl.DataFrame(schema=dict.fromkeys(header, pl.String))
    except pl.exceptions.ComputeError as exc:
        message = str(exc).splitlines()[0]
        code = "encoding" if "utf-8" in message else "malformed_csv"
        raise FileRejected(code, message) from exc
    except OSError as exc:  # a truncated .csv.gz whose first line still decompresses
        raise FileRejected("unreadable", f"cannot decompress or read ({exc})") from exc
    return frame


def _json_lines(path: Path, compressed: bool) -> pl.DataFrame:
    """Read JSON Lines; a line that is not a JSON object becomes a row with `__malformed__` set."""
    records = list(_json_records(path, compressed))
    return _records_frame(records, list(dict.fromkeys(n for record in records for n in record)))


def _json_chunks(path: Path, compressed: bool, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """`_json_lines` in frames of `chunk_rows` records: a first pass collects the field names
    of the whole file (every frame gets them all, as the whole file's frame would)."""
    names = list(dict.fromkeys(n for record in _json_records(path, compressed) for n in record))
    offset = 1
    batch: list[dict[str, str | None]] = []
    for record in _json_records(path, compressed):
        batch.append(record)
        if len(batch) == chunk_rows:
            yield _numbered(_records_frame(batch, names), offset)
            offset += len(batch)
            batch = []
    if batch or offset == 1:
        yield _numbered(_records_frame(batch, names), offset)


def _records_frame(records: list[dict[str, str | None]], names: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {name: [record.get(name) for record in records] for name in names},
        schema=dict.fromkeys(names, pl.String),
    )


def _json_records(path: Path, compressed: bool) -> Iterator[dict[str, str | None]]:
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line, object_pairs_hook=_pairs)
                except json.JSONDecodeError as exc:
                    yield {"__malformed__": f"not valid JSON ({exc.msg} at column {exc.colno})"}
                    continue
                if not line.lstrip().startswith("{"):  # arrays and scalars are not records
                    yield {"__malformed__": "a JSON line must be an object"}
                    continue
                names = [str(key).strip().lower() for key, _ in obj]
                repeated = sorted({n for n in names if names.count(n) > 1})
                if repeated:
                    # {"nps": 9, "nps": 2}: which value the exporter meant is unknowable.
                    yield {"__malformed__": f"key {repeated[0]!r} appears more than once"}
                    continue
                yield {n: _as_text(v) for n, (_, v) in zip(names, obj, strict=True)}
    except UnicodeDecodeError as exc:
        raise FileRejected(
            "encoding", f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise FileRejected("unreadable", f"cannot decompress or read ({exc})") from exc


def _pairs(pairs: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Keep a JSON object's key/value pairs as written, so repeated keys can be seen."""
    return pairs


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(p, tuple) for p in value) and value:
        value = dict(value)  # a nested object, as parsed with `_pairs`
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several kinds for a corrupt file
        raise FileRejected(
            "unreadable", f"not a readable Parquet file ({str(exc).splitlines()[0]})"
        ) from exc
    frame = frame.rename(dict(zip(frame.columns, _normalised(frame.columns), strict=True)))
    return frame.select(_parquet_text(name, dtype) for name, dtype in frame.schema.items())


def _parquet_text(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        # Keep the instant: aware values carry their offset, naive ones stay naive.
        fmt = "%Y-%m-%dT%H:%M:%S%.f%:z" if dtype.time_zone else "%Y-%m-%dT%H:%M:%S%.f"
        return column.dt.to_string(fmt).alias(name)
    if isinstance(dtype, (pl.List, pl.Struct, pl.Array)):
        return column.map_elements(_as_text, return_dtype=pl.String).alias(name)
    return column.cast(pl.String).alias(name)


def read_raw(landed: LandedFile) -> pl.DataFrame:
    """The file's records as text, columns normalised, with `source_row` first."""
    if objectstore.is_object_url(landed.path):
        with _downloaded(landed) as local:
            return _read_local(local, landed.file_format)
    return _read_local(Path(landed.path), landed.file_format)


@contextlib.contextmanager
def _downloaded(landed: LandedFile) -> Iterator[Path]:
    """The object in a local temporary file (removed afterwards), checked against the hash
    discovery recorded: the ledger must describe the bytes that were ingested."""
    fs, key = objectstore.open_root(landed.path)
    descriptor, name = tempfile.mkstemp(prefix="servio-raw-", suffix="." + landed.file_format)
    local = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as copy, fs.open(key, "rb") as remote:
            sha256 = _sha256_stream(remote, copy_to=copy)
        if sha256 != landed.sha256:
            raise FileRejected(
                "unreadable",
                "the object changed after it was discovered; its new content is a new export "
                "and is ingested by the next run",
            )
        yield local
    finally:
        local.unlink(missing_ok=True)


@contextlib.contextmanager
def local_copy(landed: LandedFile) -> Iterator[LandedFile]:
    """The file itself when local; an object downloaded once (and checked against its hash)
    for a caller that reads it several times, removed afterwards."""
    if not objectstore.is_object_url(landed.path):
        yield landed
        return
    with _downloaded(landed) as local:
        yield dataclasses.replace(landed, path=str(local))


def _read_local(path: Path, fmt: str) -> pl.DataFrame:
    if fmt in ("csv", "csv.gz"):
        frame = _read_csv(path, compressed=fmt == "csv.gz")
    elif fmt in ("jsonl", "ndjson", "jsonl.gz"):
        frame = _json_lines(path, compressed=fmt == "jsonl.gz")
    elif fmt == "parquet":
        frame = _read_parquet(path)
    else:
        raise FileRejected(
            "unsupported_format",
            f"extension {fmt!r} is not one of {', '.join(f.lstrip('.') for f in FORMATS)}",
        )
    return _numbered(frame, 1)


def _numbered(frame: pl.DataFrame, first_row: int) -> pl.DataFrame:
    return frame.with_row_index(ROW_NUMBER, offset=first_row).with_columns(
        pl.col(ROW_NUMBER).cast(pl.Int64)
    )


def read_raw_chunks(landed: LandedFile, chunk_rows: int) -> Generator[pl.DataFrame, None, None]:
    """The rows of `read_raw`, in order, in frames of at most `chunk_rows` rows (at least one
    frame, possibly empty); `source_row` numbers the file's records as `read_raw` does.

    CSV streams (Polars' streaming CSV reader, which reads a few chunks ahead); csv.gz is first
    decompressed to a temporary file, then streams the same way. JSON Lines streams in two
    passes (the first collects the field names). Parquet is read whole and then sliced:
    bounded staging downstream, but not a bounded read.
    A `FileRejected` may come from any chunk, so a caller must discard earlier chunks' output.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be ≥ 1, got {chunk_rows}")
    if objectstore.is_object_url(landed.path):
        with local_copy(landed) as local:
            yield from read_raw_chunks(local, chunk_rows)
        return
    fmt = landed.file_format
    if fmt == "csv":
        yield from _csv_chunks(Path(landed.path), chunk_rows)
    elif fmt == "csv.gz":
        with tempfile.TemporaryDirectory(prefix="servio-gunzip-") as scratch:
            plain = Path(scratch) / "export.csv"
            _gunzip(Path(landed.path), plain)
            yield from _csv_chunks(plain, chunk_rows)
    elif fmt in ("jsonl", "ndjson", "jsonl.gz"):
        yield from _json_chunks(Path(landed.path), fmt == "jsonl.gz", chunk_rows)
    else:
        whole = read_raw(landed)
        for offset in range(0, max(whole.height, 1), chunk_rows):
            yield whole.slice(offset, chunk_rows)


def _gunzip(path: Path, target: Path) -> None:
    _csv_header(path, compressed=True)  # the same rejections as `read_raw`, checked first
    try:
        with gzip.open(path, "rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, 8 * 1024 * 1024)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FileRejected("unreadable", f"cannot decompress or read ({exc})") from exc


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[pl.DataFrame]:
    header = _normalised(_csv_header(path, compressed=False))
    empty = pl.DataFrame(schema={ROW_NUMBER: pl.Int64, **dict.fromkeys(header, pl.String)})
    scan = pl.scan_csv(
        path, infer_schema=False, has_header=True, new_columns=header, encoding="utf8"
    ).with_row_index(ROW_NUMBER, offset=1)
    batches = scan.collect_batches(chunk_size=chunk_rows, maintain_order=True)
    produced = False
    try:
        for batch in batches:
            produced = True
            typed = batch.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
            for offset in range(0, typed.height, chunk_rows):  # a batch may exceed the size
                yield typed.slice(offset, chunk_rows)
    except pl.exceptions.NoDataError:
        pass
    except pl.exceptions.ComputeError as exc:
        message = str(exc).splitlines()[0]
        code = "encoding" if "utf-8" in message else "malformed_csv"
        raise FileRejected(code, message) from exc
    if not produced:
        yield empty
