"""The curated lake: every read and write of `curated_root` goes through `Lake`.

Publishing is atomic per partition file and crash-safe per run: new partition files are
written to a staging folder, a journal naming every move is committed with one atomic
rename, then the moves are applied with `os.replace`. A run killed before the journal
commit leaves the tables untouched; one killed after it is rolled forward by the next
run's `recover()`. Readers globbing `<table>/**/*.parquet` see, for each partition,
the old file or the new one, never a half-written file (staged files live outside the
table folders).

`Lake("s3://bucket/prefix")` is an `ObjectLake`: object stores have no rename, so there
partition files get new names per publication and a journal object, written with one PUT,
is the commit point; table manifests then name each partition's current file
(docs/OBJECT_STORAGE.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from schemas.tables import CuratedTable
from servio import faults, objectstore

log = logging.getLogger("servio.storage")

PART_FILE = "part-00000.parquet"
MANIFEST = "_manifest.json"
STAGING_OWNER = "_owner.json"
ROW_GROUP_ROWS = 1_000_000
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "row_group_size": ROW_GROUP_ROWS,
    "use_dictionary": True,
    "write_statistics": True,
}
PartitionValue = date | str | None  # None: the table is not partitioned
# A partition's new rows: a frame, or a Parquet file already in the table's file format
# (`write_partition_file`), which is moved or uploaded as it is, so a big publication neither
# holds every partition in memory nor writes its rows twice; None or no rows deletes it.
PartitionRows = pl.DataFrame | Path | None


class LakeBusy(RuntimeError):
    """Another live servio process holds the lake's run lock."""


class ReconciliationError(RuntimeError):
    """Counts do not add up: a row would have been lost or doubled."""


@dataclass
class TableChange:
    """New contents of some partitions of one table; a None frame deletes the partition."""

    table: CuratedTable
    partitions: dict[PartitionValue, PartitionRows] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    table: str
    partitions_written: int
    partitions_deleted: int
    rows_written: int


def partition_text(value: PartitionValue) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def to_arrow(frame: pl.DataFrame, table: CuratedTable) -> pa.Table:
    """Cast to the table's file schema: plain string (never string_view), µs UTC, decimal(18,2)."""
    schema = table.arrow_file_schema
    ordered = frame.select(schema.names)
    return ordered.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(schema)


def write_partition_file(
    rows: pl.DataFrame | pl.LazyFrame, table: CuratedTable, path: Path
) -> Path:
    """Write one partition's rows as the file `Lake.publish` will put in place unchanged
    (the table's file schema and Parquet options; synced, since it may be moved, not copied).
    A LazyFrame is written batch by batch, so the partition need not fit in memory."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(rows, pl.DataFrame):
            _write_parquet(to_arrow(rows, table), path)
        else:
            _write_parquet_batches(
                (
                    to_arrow(batch, table)
                    for batch in rows.collect_batches(chunk_size=ROW_GROUP_ROWS)
                ),
                table.arrow_file_schema,
                path,
            )
    except OSError as exc:  # typically ENOSPC: it happens before any publication
        raise OSError(
            exc.errno,
            f"{exc.strerror or exc} while writing {path}; nothing was published, the tables "
            "are unchanged: free space and run again",
        ) from exc
    return path


class Lake:
    """The curated lake on a local or mounted filesystem; `Lake("s3://…")` gives an
    `ObjectLake`, with the same interface the pipeline and flows use."""

    root: Path | str  # what messages and summaries show

    def __new__(cls, curated_root: str | Path = "") -> Lake:
        if cls is Lake and objectstore.is_object_url(curated_root):
            return super().__new__(ObjectLake)
        return super().__new__(cls)

    def __init__(self, curated_root: str | Path) -> None:
        self._dir = Path(curated_root)
        self.root = self._dir
        self.control = self._dir / "_servio"

    # -- paths -------------------------------------------------------------------------
    def table_dir(self, table: CuratedTable) -> Path:
        return self._dir / table.name

    def partition_dir(self, table: CuratedTable, value: PartitionValue) -> Path:
        if table.partition_by is None:
            return self.table_dir(table)
        return self.table_dir(table) / f"{table.partition_by}={partition_text(value)}"

    def staging_dir(self, run_id: str) -> Path:
        return self.control / "staging" / run_id

    def scratch_dir(self, run_id: str) -> Path:
        """A local folder for the publishing step's own intermediate files (it runs in the
        flow's process); removed with the run's staging."""
        return self.staging_dir(run_id) / "scratch"

    def staging_file(self, run_id: str, *parts: str) -> str:
        """Where a step writes one staged file (its folder created); every worker and the
        flow can reach it when they share the lake's storage."""
        path = self.staging_dir(run_id).joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    @property
    def site_dir(self) -> Path:
        """The local folder for the HTML report and Data Docs: beside the tables."""
        return self.control

    @property
    def data_docs_dir(self) -> Path:
        return self.site_dir / "data_docs"

    # -- reading -----------------------------------------------------------------------
    def files(self, table: CuratedTable) -> list[str]:
        return [str(p) for p in sorted(self.table_dir(table).glob("**/*.parquet"))]

    def scan(self, table: CuratedTable) -> pl.LazyFrame:
        """The whole table with its partition key typed as in the schema; empty if unpublished."""
        files = self.files(table)
        if not files:
            return pl.LazyFrame(schema=table.schema)
        hive = (
            {table.partition_by: table.schema[table.partition_by]} if table.partition_by else None
        )
        frame = pl.scan_parquet(
            files,
            # The current columns, not the first file's: partitions written before an
            # additive column existed read with nulls in it (schema evolution, docs/BI.md).
            schema=table.file_schema,
            hive_partitioning=table.partition_by is not None,
            hive_schema=hive,
            missing_columns="insert",
            extra_columns="ignore",
        )
        return frame.select(pl.col(name).cast(dtype) for name, dtype in table.schema.items())

    def partitions(self, table: CuratedTable) -> list[str]:
        if table.partition_by is None:
            return []
        prefix = f"{table.partition_by}="
        return sorted(
            p.name.removeprefix(prefix)
            for p in self.table_dir(table).glob(prefix + "*")
            if (p / PART_FILE).exists()
        )

    # -- locking -----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, run_id: str, wait_seconds: float = 0.0) -> Iterator[None]:
        """One writer at a time; a lock left by a dead process on this host is taken over."""
        self.control.mkdir(parents=True, exist_ok=True)
        path = self.control / "run.lock"
        # The lock appears with its holder already inside (hard link of a complete file): a
        # process killed while taking it never leaves an empty lock nobody can judge stale.
        claim = self.control / f"run.lock.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        _atomic_write_json(claim, _lock_holder(run_id))
        try:
            _acquire(
                self.root,
                take=lambda: _linked(claim, path),
                holder=lambda: _read_json(path),
                drop=lambda: path.unlink(missing_ok=True),
                wait_seconds=wait_seconds,
            )
        finally:
            claim.unlink()
        faults.checkpoint("lock_taken")
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- publishing --------------------------------------------------------------------
    def recover(self) -> None:
        """Finish a publication whose journal was committed; drop staging left by dead runs."""
        journal_path = self.control / "journal.json"
        journal = _read_json(journal_path)
        if journal is not None:
            log.warning("rolling forward the publication of run %s", journal["run_id"])
            self._apply(journal)
            journal_path.unlink()
        staging = self.control / "staging"
        for run_dir in sorted(staging.iterdir()) if staging.exists() else []:
            # Event-driven ingests stage outside the lock: keep staging of live processes.
            owner = _read_json(run_dir / STAGING_OWNER)
            if owner is None or _is_stale(owner):
                shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.rmdir()  # only if no live run's folder is left

    def claim_staging(self, run_id: str) -> Path | str:
        """Mark a run's staging folder as owned by this live process, so that another run's
        `recover()` keeps it (staging outside the lock); a dead owner's folder is dropped."""
        owner = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname()}
        _atomic_write_json(self.staging_dir(run_id) / STAGING_OWNER, owner)
        return self.staging_dir(run_id)

    def publish(
        self, run_id: str, changes: list[TableChange], state: Mapping[str, object] | None = None
    ) -> list[Published]:
        """Replace the given partitions of several tables as one crash-safe unit.

        `state` entries are merged into `_servio/state.json` in the same unit, so what a run
        remembers about its work (e.g. snapshot fingerprints) never disagrees with the data.
        """
        stage = self.staging_dir(run_id) / "publish"
        try:
            moves: list[tuple[str, str]] = []
            if state:
                staged_state = stage / "_servio_state.json"
                _atomic_write_json(staged_state, {**self.state(), **state})
                moves.append((self._rel(staged_state), self._rel(self.control / "state.json")))
            deletes: list[str] = []
            report: list[Published] = []
            heights: dict[str, dict[str, int]] = {}  # rows per partition now published
            for change in changes:
                written = deleted = rows = 0
                table_heights = heights.setdefault(change.table.name, {})
                for value, rows_or_file in change.partitions.items():
                    final = self.partition_dir(change.table, value) / PART_FILE
                    height = _height(rows_or_file)
                    table_heights[partition_text(value) if change.table.partition_by else ""] = (
                        height
                    )
                    if height == 0:
                        if final.exists():
                            deletes.append(self._rel(final))
                            deleted += 1
                        continue
                    staged = stage / self._rel(final)
                    staged.parent.mkdir(parents=True, exist_ok=True)
                    if isinstance(rows_or_file, Path):
                        shutil.move(rows_or_file, staged)  # a rename on the same filesystem
                    else:
                        assert rows_or_file is not None
                        _write_parquet(to_arrow(rows_or_file, change.table), staged)
                    faults.checkpoint("partition_staged")
                    moves.append((self._rel(staged), self._rel(final)))
                    written += 1
                    rows += height
                manifest = stage / change.table.name / MANIFEST
                manifest.parent.mkdir(parents=True, exist_ok=True)
                report.append(Published(change.table.name, written, deleted, rows))
                moves.append(
                    (self._rel(manifest), self._rel(self.table_dir(change.table) / MANIFEST))
                )
            journal = {"run_id": run_id, "moves": moves, "deletes": deletes}
            # Manifests describe the tables after the moves; write them before committing.
            self._write_manifests(run_id, changes, heights, stage)
            faults.checkpoint("before_journal_commit")
            _atomic_write_json(self.control / "journal.json", journal)
        except OSError as exc:  # typically ENOSPC: say what it means for the tables
            shutil.rmtree(stage, ignore_errors=True)
            raise OSError(
                exc.errno,
                f"{exc.strerror or exc} while staging run {run_id}'s publication; nothing was "
                "published, the tables are unchanged: free space and run again",
            ) from exc
        faults.checkpoint("after_journal_commit")
        self._apply(journal)
        faults.checkpoint("after_apply")
        (self.control / "journal.json").unlink()
        shutil.rmtree(stage, ignore_errors=True)
        for item in report:
            log.info(
                "published %s: %d partitions written (%d rows), %d deleted",
                item.table,
                item.partitions_written,
                item.rows_written,
                item.partitions_deleted,
            )
        return report

    def state(self) -> dict[str, object]:
        return _read_json(self.control / "state.json") or {}

    def discard_staging(self, run_id: str) -> None:
        shutil.rmtree(self.staging_dir(run_id), ignore_errors=True)

    def _write_manifests(
        self,
        run_id: str,
        changes: list[TableChange],
        heights: Mapping[str, Mapping[str, int]],
        stage: Path,
    ) -> None:
        now = datetime.now(UTC).isoformat()
        for change in changes:
            table = change.table
            counts = self._partition_rows(table)
            for key, height in heights[table.name].items():
                if height == 0:
                    counts.pop(key, None)
                else:
                    counts[key] = height
            _atomic_write_json(
                stage / table.name / MANIFEST, manifest_of(table, run_id, now, counts)
            )

    def _partition_rows(self, table: CuratedTable) -> dict[str, int]:
        previous = _read_json(self.table_dir(table) / MANIFEST)
        return dict(previous["partitions"]) if previous else {}

    def _apply(self, journal: Mapping[str, Any]) -> None:
        for staged_rel, final_rel in journal["moves"]:
            staged, final = self._dir / staged_rel, self._dir / final_rel
            if staged.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
                faults.checkpoint("between_moves")
        for final_rel in journal["deletes"]:
            final = self._dir / final_rel
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
            with contextlib.suppress(OSError):
                final.parent.rmdir()
        _fsync_dir(self._dir)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self._dir).as_posix()


def manifest_of(
    table: CuratedTable, run_id: str, published_at: str, counts: Mapping[str, int]
) -> dict[str, object]:
    """A table's `_manifest.json`: what it is, who published it when, rows per partition."""
    return {
        "table": table.name,
        "grain": table.grain,
        "key": list(table.key),
        "partition_by": table.partition_by,
        "schema_version": table.schema_version,
        "published_at": published_at,
        "run_id": run_id,
        "row_count": sum(counts.values()),
        "partitions": dict(sorted(counts.items())),
    }


def _height(rows_or_file: PartitionRows) -> int:
    if isinstance(rows_or_file, Path):
        return int(pq.read_metadata(rows_or_file).num_rows)
    return 0 if rows_or_file is None else rows_or_file.height


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, **PARQUET_OPTIONS)
    _fsync(path)


def _write_parquet_batches(tables: Iterable[pa.Table], schema: pa.Schema, path: Path) -> None:
    options = {k: v for k, v in PARQUET_OPTIONS.items() if k != "row_group_size"}
    with pq.ParquetWriter(path, schema, **options) as writer:
        for table in tables:
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    _fsync(path)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _atomic_write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _lock_holder(run_id: str) -> dict[str, object]:
    return {
        "run_id": run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(),
    }


def _linked(claim: Path, path: Path) -> bool:
    """Hard-link the claim as the lock; False when the lock exists."""
    try:
        os.link(claim, path)
    except FileExistsError:
        return False
    return True


def _acquire(
    root: object,
    take: Callable[[], bool],
    holder: Callable[[], Mapping[str, object] | None],
    drop: Callable[[], None],
    wait_seconds: float,
) -> None:
    """Take the run lock with `take`, waiting up to `wait_seconds` for a live holder; the lock
    of a dead process on this host is dropped and taken over. Raises LakeBusy."""
    deadline = time.monotonic() + wait_seconds
    while not take():
        other = holder()
        if other is not None and _is_stale(other):
            log.warning("taking over a stale lock from dead process %s", other.get("pid"))
            drop()
            continue
        if time.monotonic() >= deadline:
            raise LakeBusy(
                f"{root} is busy: run {other and other.get('run_id')} "
                f"(pid {other and other.get('pid')} on {other and other.get('host')}) "
                "is writing; try again when it ends"
            )
        time.sleep(0.2)


def _is_stale(holder: Mapping[str, object]) -> bool:
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(str(holder.get("pid"))), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


CONTROL = "_servio"
JOURNAL = "journal.json"
PENDING = "pending.json"


class ObjectLake(Lake):
    """The curated lake on an object store (`s3://bucket/prefix`), which has no rename.

    A publication PUTs each new partition file under a name of its own
    (`part-<run_id>-<token>.parquet`, never overwritten), then commits with one PUT of
    `_servio/journal.json` holding every new table manifest (and the run state); applying it
    PUTs the manifests, then deletes the superseded files. Readers of `scan`/`files` see the
    files a manifest names — the committed journal's, while one is pending — so always one
    whole publication. A publication that dies before its commit leaves files no manifest
    names; `_servio/staging/<run>/publish/pending.json` lists them for `recover()` to delete.
    """

    root: str

    def __init__(self, curated_root: str | Path) -> None:
        self.root = objectstore.check_root(str(curated_root))
        self._base = self.root.split("://", 1)[1]  # bucket/prefix, as fsspec names keys
        self._fs: AbstractFileSystem | None = None

    def __getstate__(self) -> dict[str, object]:
        # Tasks on Dask workers get the lake pickled; each process opens its own connection.
        return {**self.__dict__, "_fs": None}

    @property
    def fs(self) -> AbstractFileSystem:
        if self._fs is None:
            self._fs, _ = objectstore.open_root(self.root)
        return self._fs

    # -- keys --------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join((self._base, *parts))

    def _url(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def table_dir(self, table: CuratedTable) -> Path:
        raise TypeError(f"{self.root} is an object store: tables have keys, not folders")

    def partition_dir(self, table: CuratedTable, value: PartitionValue) -> Path:
        raise TypeError(f"{self.root} is an object store: partitions have keys, not folders")

    def staging_dir(self, run_id: str) -> Path:
        raise TypeError(f"{self.root} is an object store: use staging_file()")

    def staging_file(self, run_id: str, *parts: str) -> str:
        # Under the lake, not on local disk: a Dask worker on another machine stages there
        # and the flow (or another worker) reads it back.
        return self._url("/".join((CONTROL, "staging", run_id, *parts)))

    @property
    def site_dir(self) -> Path:
        return objectstore.local_site_dir(self.root)

    # -- reading -----------------------------------------------------------------------
    def files(self, table: CuratedTable) -> list[str]:
        """The files the current manifest names (not a listing: a listing may show files
        of a publication that is not committed, or superseded files not yet deleted)."""
        manifest = self._manifest(table.name)
        files: dict[str, str] = manifest.get("files", {}) if manifest else {}
        return [self._url(relative) for _, relative in sorted(files.items())]

    def partitions(self, table: CuratedTable) -> list[str]:
        manifest = self._manifest(table.name)
        if table.partition_by is None or manifest is None:
            return []
        return sorted(manifest.get("files", {}))

    def state(self) -> dict[str, object]:
        journal = self._read_json(self._key(CONTROL, JOURNAL))
        if journal is not None and journal.get("state") is not None:
            return dict(journal["state"])
        return self._read_json(self._key(CONTROL, "state.json")) or {}

    def _manifest(self, table_name: str) -> dict | None:
        """The committed manifest: a pending journal's if it has one for this table."""
        journal = self._read_json(self._key(CONTROL, JOURNAL))
        if journal is not None and table_name in journal["manifests"]:
            return dict(journal["manifests"][table_name])
        return self._read_json(self._key(table_name, MANIFEST))

    # -- locking -----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, run_id: str, wait_seconds: float = 0.0) -> Iterator[None]:
        """One writer at a time: the lock object is created by a conditional PUT
        (If-None-Match: *), which the store refuses when the object exists."""
        key = self._key(CONTROL, "run.lock")
        payload = json.dumps(_lock_holder(run_id), indent=2).encode()
        _acquire(
            self.root,
            take=lambda: self._create(key, payload),
            holder=lambda: self._read_json(key),
            drop=lambda: self._delete(key),
            wait_seconds=wait_seconds,
        )
        faults.checkpoint("lock_taken")
        try:
            yield
        finally:
            self._delete(key)

    # -- publishing --------------------------------------------------------------------
    def recover(self) -> None:
        """Finish a committed publication; drop staging (and uncommitted partition files)
        left by dead runs."""
        journal = self._read_json(self._key(CONTROL, JOURNAL))
        if journal is not None:
            log.warning("rolling forward the publication of run %s", journal["run_id"])
            self._apply(journal)
            self._delete(self._key(CONTROL, JOURNAL))
        try:
            run_dirs = self.fs.ls(self._key(CONTROL, "staging"), detail=False)
        except FileNotFoundError:
            return
        for run_dir in sorted(run_dirs):
            # Event-driven ingests stage outside the lock: keep staging of live processes.
            owner = self._read_json(f"{run_dir}/{STAGING_OWNER}")
            if owner is None or _is_stale(owner):
                self._drop_staging(run_dir)

    def claim_staging(self, run_id: str) -> str:
        owner = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname()}
        self._write_json(self._key(CONTROL, "staging", run_id, STAGING_OWNER), owner)
        return self.staging_file(run_id)

    def scratch_dir(self, run_id: str) -> Path:
        # Publishing runs in the flow's process: its scratch stays on local disk.
        return Path(tempfile.gettempdir()) / "servio-scratch" / run_id

    def discard_staging(self, run_id: str) -> None:
        self._drop_staging(self._key(CONTROL, "staging", run_id))
        shutil.rmtree(self.scratch_dir(run_id), ignore_errors=True)

    def publish(
        self, run_id: str, changes: list[TableChange], state: Mapping[str, object] | None = None
    ) -> list[Published]:
        """Replace the given partitions of several tables as one crash-safe unit (see class)."""
        token = f"{run_id}-{os.urandom(3).hex()}"
        new_files = {
            change.table.name: {
                value: self._new_file(change.table, value, token)
                for value, rows_or_file in change.partitions.items()
                if _height(rows_or_file) > 0
            }
            for change in changes
        }
        pending_key = self._key(CONTROL, "staging", run_id, "publish", PENDING)
        now = datetime.now(UTC).isoformat()
        try:
            # Named before any is written, so a crash never leaves a file recover cannot find.
            pending = {name: sorted(files.values()) for name, files in new_files.items()}
            self._write_json(pending_key, {"run_id": run_id, "files": pending})
            manifests: dict[str, dict[str, object]] = {}
            deletes: list[str] = []
            report: list[Published] = []
            for change in changes:
                table = change.table
                previous = self._manifest(table.name) or {}
                counts: dict[str, int] = dict(previous.get("partitions", {}))
                files: dict[str, str] = dict(previous.get("files", {}))
                written = deleted = rows = 0
                for value, rows_or_file in change.partitions.items():
                    key = partition_text(value) if table.partition_by else ""
                    superseded = files.pop(key, None)
                    counts.pop(key, None)
                    if superseded is not None:
                        deletes.append(superseded)
                    height = _height(rows_or_file)
                    if height == 0:
                        deleted += superseded is not None
                        continue
                    relative = new_files[table.name][value]
                    if isinstance(rows_or_file, Path):  # already in the table's file format
                        self.fs.put_file(str(rows_or_file), self._key(relative))
                    else:
                        assert rows_or_file is not None
                        self._put_parquet(to_arrow(rows_or_file, table), self._key(relative))
                    faults.checkpoint("partition_staged")
                    files[key], counts[key] = relative, height
                    written += 1
                    rows += height
                manifests[table.name] = {
                    **manifest_of(table, run_id, now, counts),
                    "files": dict(sorted(files.items())),
                }
                report.append(Published(table.name, written, deleted, rows))
            journal = {
                "run_id": run_id,
                "manifests": manifests,
                "state": {**self.state(), **state} if state else None,
                "deletes": deletes,
            }
            faults.checkpoint("before_journal_commit")
            self._write_json(self._key(CONTROL, JOURNAL), journal)  # the commit point
        except OSError as exc:
            # Files already written are named in pending.json: the next recover() (or this
            # run's discard_staging) deletes them; no manifest names them meanwhile.
            raise OSError(
                exc.errno,
                f"{exc.strerror or exc} while staging run {run_id}'s publication to "
                f"{self.root}; nothing was published, the tables are unchanged",
            ) from exc
        faults.checkpoint("after_journal_commit")
        self._apply(journal)
        faults.checkpoint("after_apply")
        self._delete(self._key(CONTROL, JOURNAL))
        self._delete(pending_key)
        for item in report:
            log.info(
                "published %s to %s: %d partitions written (%d rows), %d deleted",
                item.table,
                self.root,
                item.partitions_written,
                item.rows_written,
                item.partitions_deleted,
            )
        return report

    def _new_file(self, table: CuratedTable, value: PartitionValue, token: str) -> str:
        folder = table.name
        if table.partition_by is not None:
            folder += f"/{table.partition_by}={partition_text(value)}"
        return f"{folder}/part-{token}.parquet"

    def _apply(self, journal: Mapping[str, Any]) -> None:
        """Idempotent: manifests are rewritten whole, deleting a missing file is a no-op."""
        for name, manifest in sorted(journal["manifests"].items()):
            self._write_json(self._key(name, MANIFEST), manifest)
            faults.checkpoint("between_moves")
        if journal["state"] is not None:
            self._write_json(self._key(CONTROL, "state.json"), journal["state"])
        for relative in journal["deletes"]:
            self._delete(self._key(relative))

    def _drop_staging(self, run_dir: str) -> None:
        """Delete a run's staging and the partition files of its uncommitted publication."""
        pending = self._read_json(f"{run_dir}/publish/{PENDING}")
        if pending is not None:
            journal = self._read_json(self._key(CONTROL, JOURNAL)) or {"manifests": {}}
            for name, files in pending["files"].items():
                manifest = journal["manifests"].get(name) or self._read_json(
                    self._key(name, MANIFEST)
                )
                committed = set(manifest.get("files", {}).values()) if manifest else set()
                for relative in set(files) - committed:
                    self._delete(self._key(relative))
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(run_dir, recursive=True)

    # -- objects -----------------------------------------------------------------------
    def _create(self, key: str, payload: bytes) -> bool:
        """PUT the object only if it does not exist yet; False when it does."""
        try:
            self.fs.pipe_file(key, payload, mode="create")
        except FileExistsError:
            return False
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"{self.root}: the bucket does not exist or cannot be reached with the AWS "
                "settings in use"
            ) from exc
        return True

    def _read_json(self, key: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(key))
        except FileNotFoundError:
            return None

    def _write_json(self, key: str, payload: object) -> None:
        self.fs.pipe_file(key, json.dumps(payload, indent=2, default=str).encode())

    def _put_parquet(self, table: pa.Table, key: str) -> None:
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, **PARQUET_OPTIONS)
        self.fs.pipe_file(key, buffer.getvalue().to_pybytes())

    def _delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(key)
