"""The landing zone (raw root): discover complete exports, hash them, hand them to the readers.

Raw files are only ever read here and in `servio.raw.readers`: never modified, moved or deleted
(SPEC §1.1). The raw root may be `s3://bucket/prefix`: objects are listed and hashed
streaming, and an object is read by downloading it to a local temporary file checked against
its hash, then read by the same readers as a local file (bounded by local disk, not memory).

Discovery never stops at one file. A file it must not or cannot read is still described, with
a `FileProblem`: `refused` for its location (a folder that names no source, a symbolic link
out of the raw root, something that is not a regular file) and `deferred` for an I/O failure
(permission denied, changed while hashed). Neither is a verdict about the content, so neither
is remembered by hash: the next run looks at the file again (RELIABILITY.md, "hash memory").
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Collection, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl

from servio import objectstore
from servio.raw.readers import FORMATS, FileRejected, read_chunks
from servio.schemas.sources import SOURCE_NAMES, UNKNOWN_SOURCE
from servio.schemas.tables import DEFERRED, REFUSED

__all__ = ["FORMATS", "FileRejected"]

IN_FLIGHT_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")


@dataclass(frozen=True)
class FileProblem:
    """Why discovery did not hand a file to the readers."""

    status: str  # REFUSED or DEFERRED
    code: str
    detail: str


class FileDeferred(Exception):
    """The file could not be read this time (I/O, not its content): retried next run."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class LandedFile:
    """A file in the landing zone, identified by its content hash."""

    path: str  # absolute (a link's target inside the root), or the object's s3:// URL
    relative_path: str  # to the raw root; what tables and messages show
    source: str  # interactions, surveys, or unknown
    file_format: str  # csv, csv.gz, jsonl, jsonl.gz, ndjson, parquet, or the bad suffix
    size_bytes: int
    sha256: str | None  # None when the bytes were not read (see `problem`)
    # (size, mtime_ns, ctime_ns, inode, device) when hashed: a change after it shows.
    stat_key: tuple[int, ...] | None = None
    problem: FileProblem | None = None


def is_in_flight(name: str) -> bool:
    return name.startswith((".", "_")) or name.lower().endswith(IN_FLIGHT_SUFFIXES)


def file_format_of(name: str) -> str | None:
    lower = name.lower()
    return next((fmt.lstrip(".") for fmt in FORMATS if lower.endswith(fmt)), None)


HASH_CHUNK_BYTES = 8 * 1024 * 1024
HASH_THREADS = min(4, os.cpu_count() or 1)  # files hashed at once by `discover`


def sha256_of(path: Path) -> str:
    """The file's SHA-256; a symbolic link is not followed (it is opened as itself)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
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
    return first if first in SOURCE_NAMES else UNKNOWN_SOURCE


def _stat_key(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)


def discover(raw_root: str | Path) -> Iterator[LandedFile]:
    """Every complete file under the raw root, in path order (which sets ingestion order);
    files that cannot be read carry their `problem`."""
    if objectstore.is_object_url(raw_root):
        yield from _discover_objects(str(raw_root))
        return
    root = Path(raw_root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"raw_root {raw_root}: no such folder")
    found: list[tuple[str, Path | None, FileProblem | None]] = []

    def unlisted(error: OSError) -> None:
        if error.filename is None or Path(error.filename).resolve() == root:
            raise error
        folder = Path(error.filename)
        found.append((folder.relative_to(root).as_posix(), None, _io_problem(error)))

    for folder, dirs, files in os.walk(root, onerror=unlisted):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not is_in_flight(d)]
        for name in dirs:
            if (here / name).is_symlink():  # never descended into; one out of the root is shown
                target = _resolved(here / name)
                if target is None or not target.is_relative_to(root):
                    relative = (here / name).relative_to(root).as_posix()
                    found.append((relative, None, _outside(relative, "folder")))
        for name in files:
            if not is_in_flight(name):
                found.append(((here / name).relative_to(root).as_posix(), here / name, None))
    # Hashed on a few threads (hashlib and the reads let go of the GIL), yielded in order.
    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="servio-hash") as pool:
        described = pool.map(
            lambda item: _describe(root, *item), sorted(found, key=lambda item: item[0])
        )
        yield from (landed for landed in described if landed is not None)


def describe_local(root: Path, path: Path) -> LandedFile | None:
    """One local file of the raw zone, hashed, or with the problem that kept it unread;
    None when it vanished before it could be looked at."""
    root = root.resolve()
    return _describe(root, path.relative_to(root).as_posix(), path, None)


def _describe(
    root: Path, relative: str, path: Path | None, problem: FileProblem | None
) -> LandedFile | None:
    parts = relative.split("/")
    source = (
        (parts[0] if parts[0] in SOURCE_NAMES else UNKNOWN_SOURCE)
        if len(parts) > 1
        else UNKNOWN_SOURCE
    )
    fmt = file_format_of(parts[-1]) or Path(parts[-1]).suffix.lstrip(".").lower()
    landed = LandedFile(str(path or root / relative), relative, source, fmt, 0, None)
    if problem is not None or path is None:
        return dataclasses.replace(landed, problem=problem)
    try:
        if path.is_symlink():
            target = _resolved(path)
            if target is None or not target.is_relative_to(root) or target == root:
                return dataclasses.replace(landed, problem=_outside(relative, "file"))
            path = target  # read the target itself: a later swap of the link is not followed
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            return dataclasses.replace(
                landed,
                problem=FileProblem(
                    REFUSED, "not_a_file", "not a regular file (a folder, FIFO, socket or device)"
                ),
            )
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb") as handle:
            before = os.fstat(descriptor)
            sha256 = _sha256_stream(handle)
            after = os.fstat(descriptor)
    except FileNotFoundError:
        return None  # gone between listing and reading: nothing is there to ingest
    except OSError as exc:
        return dataclasses.replace(landed, problem=_io_problem(exc))
    landed = dataclasses.replace(
        landed, path=str(path), size_bytes=after.st_size, sha256=sha256, stat_key=_stat_key(after)
    )
    if _stat_key(before) != _stat_key(after) or _stat_key(info) != _stat_key(after):
        return dataclasses.replace(
            landed,
            problem=FileProblem(
                DEFERRED,
                "changed_while_read",
                "the file changed while it was hashed (still being written?)",
            ),
        )
    return landed


def _resolved(link: Path) -> Path | None:
    """Where a symbolic link leads; None for a loop of links."""
    try:
        return link.resolve()
    except (RuntimeError, OSError):
        return None


def _outside(relative: str, kind: str) -> FileProblem:
    return FileProblem(
        REFUSED,
        "outside_raw_root",
        f"a symbolic link to a {kind} outside the raw root (or in a loop): not followed, not read",
    )


def _io_problem(exc: OSError) -> FileProblem:
    """An operating-system failure as a deferral (never the exception's text: it may hold
    paths outside the raw root)."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return FileProblem(DEFERRED, "permission_denied", "permission denied")
    name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return FileProblem(DEFERRED, "io_error", f"cannot be read ({name})")


def deferral_of(exc: OSError) -> FileDeferred:
    """An OSError met while reading a landed file, as its deferral."""
    if isinstance(exc, FileNotFoundError):
        return FileDeferred("vanished", "the file was removed while it was read")
    problem = _io_problem(exc)
    return FileDeferred(problem.code, problem.detail)


def check_unchanged(landed: LandedFile) -> None:
    """Raise `FileDeferred` when the local file is no longer the one discovery hashed (it
    was rewritten, replaced or removed while it was read): the next run takes its new
    content. The test is discovery's own while it hashes: the same stat key (size, mtime,
    ctime, inode, device). Any write changes ctime, which no process can set back, so the
    bytes are not hashed again (that second pass cost as much CPU as reading the CSV), unless
    discovery kept no stat key. An object was already checked against its hash when it was
    downloaded."""
    if objectstore.is_object_url(landed.path) or landed.sha256 is None:
        return
    path = Path(landed.path)
    try:
        info = os.lstat(path)
        if landed.stat_key is not None:
            same = landed.stat_key == _stat_key(info)
        else:
            same = sha256_of(path) == landed.sha256
    except FileNotFoundError:
        raise FileDeferred("vanished", "the file was removed while it was read") from None
    except OSError as exc:
        raise deferral_of(exc) from None
    if not same:
        raise FileDeferred("changed_while_read", "the file changed while it was read")


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
        landed = LandedFile(
            path=objectstore.to_url(fs, key),
            relative_path=relative,
            source=(parts[0] if parts[0] in SOURCE_NAMES else UNKNOWN_SOURCE)
            if len(parts) > 1
            else UNKNOWN_SOURCE,
            file_format=file_format_of(parts[-1]) or Path(parts[-1]).suffix.lstrip(".").lower(),
            size_bytes=int(info["size"]),
            sha256=None,
        )
        try:
            with fs.open(key, "rb", block_size=HASH_CHUNK_BYTES) as handle:
                sha256 = _sha256_stream(handle)
        except FileNotFoundError:
            continue  # deleted since the listing
        except OSError as exc:
            yield dataclasses.replace(landed, problem=_io_problem(exc))
            continue
        yield dataclasses.replace(landed, sha256=sha256)


def read_raw(landed: LandedFile, columns: Collection[str]) -> pl.DataFrame:
    """The whole file's records as text (`columns` only), with `source_row` first."""
    frames = list(read_raw_chunks(landed, 1 << 62, columns))
    return pl.concat(frames, how="diagonal") if len(frames) > 1 else frames[0]


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
            raise FileDeferred(
                "changed_while_read",
                "the object changed after it was discovered (its new content is a new export)",
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


def read_raw_chunks(
    landed: LandedFile, chunk_rows: int, columns: Collection[str]
) -> Generator[pl.DataFrame, None, None]:
    """The file's records, in order, in frames of at most `chunk_rows` rows (at least one
    frame, possibly empty), keeping only `columns` (the contract's): `servio.raw.readers`.

    A `FileRejected` may come from any chunk, so a caller must discard earlier chunks' output.
    """
    if objectstore.is_object_url(landed.path):
        with local_copy(landed) as local:
            yield from read_raw_chunks(local, chunk_rows, columns)
        return
    yield from read_chunks(Path(landed.path), landed.file_format, columns, chunk_rows)
