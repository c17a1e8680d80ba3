"""The curated lake: every read and write of `curated_root` goes through `Lake`, one
implementation for a local folder and an `s3://` prefix (`objectstore.Store` holds the few
file operations that differ; delta-rs reads and commits both).

Every table is a Delta table (`servio.lake.delta`): readers see whole versions, and a replaced
partition's old file stays on disk until vacuum. A publication, which changes several
tables, is exactly-once across them (`servio.lake.publication`: a staged plan as commit point,
Delta application transactions, roll-forward by `recover()`); `_servio/publications` records
every table's version per publication, so readers can pin one consistent lake (`pinned()`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from servio import faults, objectstore
from servio.lake import delta, publication
from servio.lake.files import (
    CATALOG_FILE,
    CONTROL,
    CONTROL_TABLES,
    PLAN,
    STAGING_OWNER,
    Published,
    TableChange,
)
from servio.schemas.table import CuratedTable
from servio.schemas.tables import LAKE_STATE, PUBLICATIONS

log = logging.getLogger("servio.lake.lake")

LOCK = f"{CONTROL}/run.lock"
RUNS = f"{CONTROL}/runs"  # one run-results file per run that changed the lake
# servio maintains the lake (compaction, checkpoints, vacuum) after a publication once the
# append-only publication record holds this many small files (one per publication).
MAINTAIN_AFTER_FILES = 50


class LakeBusy(RuntimeError):
    """Another live servio process holds the lake's run lock."""


class Lake:
    """The curated lake at a local path or `s3://bucket/prefix`. `versions` pins the tables
    (name → Delta version) for reading, e.g. at the latest publication (`pinned()`)."""

    def __init__(self, curated_root: str | Path, versions: Mapping[str, int] | None = None):
        self.store = objectstore.Store(curated_root)
        # What messages and summaries show: the root as configured.
        self.root: Path | str = self.store.root if not self.store.is_local else Path(curated_root)
        self.versions = dict(versions) if versions is not None else None
        # Wall seconds this object spent publishing (benchmarks report it as run metadata).
        self.publish_seconds = 0.0
        # Inside `reusing_tables()`: table name → its open DeltaTable at the latest version.
        self._latest: dict[str, Any] = {}
        self._reusing = 0  # how many `reusing_tables()` blocks are open
        self._guard = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a run's context for Dask workers) without open tables or the lock."""
        state = self.__dict__.copy()
        state.update(_latest={}, _reusing=0, _guard=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _guard=threading.Lock())

    # -- paths -------------------------------------------------------------------------
    @property
    def control(self) -> Path:
        return self.store.local(CONTROL)

    def location(self, name: str) -> str:
        """A table's folder, relative to the root."""
        return f"{CONTROL}/{name}" if name in CONTROL_TABLES else name

    def table_url(self, name: str) -> str:
        return self.store.url(self.location(name))

    def table_dir(self, table: CuratedTable) -> Path:
        return self.store.local(self.location(table.name))

    def staging_dir(self, run_id: str) -> Path:
        return self.store.local(self.staging_key(run_id))

    def staging_key(self, run_id: str, *parts: str) -> str:
        """A key of the run's staging, relative to the root."""
        return "/".join((CONTROL, "staging", run_id, *parts))

    def scratch_dir(self, run_id: str) -> Path:
        """A local folder for the publishing step's own intermediate files (it runs in the
        flow's process); removed with the run's staging."""
        if self.store.is_local:
            return self.staging_dir(run_id) / "scratch"
        return Path(tempfile.gettempdir()) / "servio-scratch" / run_id

    def staging_file(self, run_id: str, *parts: str) -> str:
        """Where a step writes one staged file (local folder created); under the lake, so
        every worker and the flow can reach it when they share the lake's storage."""
        key = self.staging_key(run_id, *parts)
        if self.store.is_local:
            self.store.local(key).parent.mkdir(parents=True, exist_ok=True)
        return self.store.url(key)

    @property
    def site_dir(self) -> Path:
        """The local folder for the HTML report, Data Docs and the DuckDB catalog of an
        object-store lake; beside the tables on disk."""
        if self.store.is_local:
            return self.control
        return objectstore.local_site_dir(self.store.root)

    @property
    def report_path(self) -> Path:
        """Where `servio run` and `servio report` put the HTML report: beside the tables."""
        return self.site_dir / "report.html"

    @property
    def data_docs_dir(self) -> Path:
        return self.site_dir / "data_docs"

    @property
    def data_docs_index(self) -> Path:
        """The Data Docs' offline index (pass/fail per file and per expectation), which the
        report links to; GX's own `index.html` beside it needs internet."""
        return self.data_docs_dir / "servio-validations.html"

    @property
    def catalog_path(self) -> Path:
        """`<curated_root>/servio.duckdb`; for an s3:// lake, in the local site folder."""
        if self.store.is_local:
            return self.store.local(CATALOG_FILE)
        return self.site_dir / CATALOG_FILE

    @property
    def storage_options(self) -> dict[str, str] | None:
        return objectstore.delta_storage_options(self.store.root)

    def check_reachable(self) -> None:
        """The lake's storage can be reached (an object store's bucket exists)."""
        self.store.check_reachable()

    # -- reading -----------------------------------------------------------------------
    def delta_table(self, name: str, version: int | None = None) -> Any:
        """The `deltalake.DeltaTable` of a table: at `version`, at the pinned version, or
        the latest; None when it was never published (or not yet at the pinned point)."""
        if version is None and self.versions is not None:
            if name not in self.versions:
                return None
            version = self.versions[name]
        if version is None and self._reusing:
            with self._guard:
                table = self._latest.get(name)
                if table is not None:
                    table.update_incremental()  # the commits since it was read, if any
                    return table
        table = delta.open_table(self.table_url(name), self.storage_options, version)
        if version is None and table is not None:
            with self._guard:
                if self._reusing:
                    self._latest.setdefault(name, table)
        return table

    @contextlib.contextmanager
    def reusing_tables(self) -> Iterator[None]:
        """Within the block (one run of the sequence), a table's latest version is read by
        bringing the table opened the first time up to date (`update_incremental`: the
        log's new commits only, whoever wrote them) instead of opening it anew, log and all,
        for each scan: a small run scans its tables some twenty times. Outside, every read
        opens the table (a lake replaced under a long-lived `Lake` is read as it is now)."""
        with self._guard:
            self._reusing += 1
        try:
            yield
        finally:
            with self._guard:
                self._reusing -= 1
                if not self._reusing:
                    self._latest.clear()

    def files(self, table: CuratedTable) -> list[str]:
        """The data files of the table's current (or pinned) version: never a listing, which
        would also show superseded files not yet vacuumed."""
        current = self.delta_table(table.name)
        return sorted(current.file_uris()) if current is not None else []

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
        current = self.delta_table(table.name)
        if table.partition_by is None or current is None:
            return []
        return sorted({p[table.partition_by] for p in current.partitions()})

    def state(self) -> dict[str, object]:
        rows = self.scan(LAKE_STATE).collect()
        return {key: json.loads(value) for key, value in rows.iter_rows()}

    def publications(self) -> pl.DataFrame:
        """Every publication's row per table: number, run, time, table, Delta version."""
        return self.scan(PUBLICATIONS).sort("publication", "table_name").collect()

    def pinned(self, publication: int | None = None) -> Lake:
        """This lake read at one publication (default: the latest): every table at the
        version that publication left, so reads across tables are consistent."""
        record = Lake(self.store.root).publications()
        if record.is_empty():
            return Lake(self.store.root, versions={})
        number = publication if publication is not None else int(record["publication"].max())  # type: ignore[arg-type]
        rows = record.filter(pl.col("publication") == number)
        if rows.is_empty():
            raise ValueError(f"{self.root}: no publication {number}")
        versions = dict(rows.select("table_name", "table_version").iter_rows())
        return Lake(self.store.root, versions=versions)

    # -- locking -----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, run_id: str, wait_seconds: float = 0.0) -> Iterator[None]:
        """One writer at a time; a lock left by a dead process on this host is taken over.
        The lock is created with its holder inside (a hard link on disk, a conditional PUT
        on S3), so a process killed while taking it leaves nothing nobody can judge. The lock
        file names the process, so threads of one process (a backfill's, a served flow's
        tasks) first queue for this lake in the process."""
        deadline = time.monotonic() + wait_seconds
        key = str(Path(self.store.root).resolve()) if self.store.is_local else self.store.root
        in_process = _process_lock(key)
        if not in_process.acquire(timeout=max(wait_seconds, 0.0)):
            raise LakeBusy(f"{self.root} is busy: another run of this process is writing")
        try:
            holder = _lock_holder(run_id)
            _acquire(
                self.root,
                take=lambda: self.store.create_json(LOCK, holder),
                holder=lambda: self.store.read_json(LOCK),
                drop=lambda: self.store.delete(LOCK),
                wait_seconds=max(deadline - time.monotonic(), 0.0),
            )
            faults.checkpoint("lock_taken")
            try:
                yield
            finally:
                self.store.delete(LOCK)
        finally:
            in_process.release()

    def lock_holder(self) -> dict[str, object] | None:
        """The live process holding the run lock, if any (a dead process's lock on this host
        is not held: the next run takes it over). For answering "busy" before a run starts;
        `lock` alone decides."""
        holder = self.store.read_json(LOCK)
        return None if holder is None or _is_stale(holder) else holder

    def needs_recovery(self) -> bool:
        """Whether the next writer has something to finish or drop first (`recover()`): a
        committed publication not applied, or staging left by a run."""
        return self.store.read_json(PLAN) is not None or bool(
            self.store.children(f"{CONTROL}/staging")
        )

    # -- run results ---------------------------------------------------------------------
    def write_run_results(self, run_id: str, results: Mapping[str, object]) -> str:
        """Write what a run did as `_servio/runs/<run_id>.json` (local or object storage);
        returns where."""
        key = f"{RUNS}/{run_id}.json"
        self.store.write_json(key, dict(results))
        return self.store.url(key)

    # -- publishing --------------------------------------------------------------------
    def recover(self) -> None:
        """Finish a publication whose plan was committed; drop staging left by dead runs."""
        plan = self.store.read_json(PLAN)
        if plan is not None:
            log.warning(
                "rolling forward publication %d of run %s", plan["publication"], plan["run_id"]
            )
            publication.apply(self, plan)
            # A plan left behind means its run is over (it died, or its publish failed): once
            # the plan is applied, nothing of that run's staging is needed any more.
            self.discard_staging(plan["run_id"])
        for run_id in self.store.children(f"{CONTROL}/staging"):
            # Event-driven ingests stage outside the lock: keep staging of live processes.
            owner = self.store.read_json(self.staging_key(run_id, STAGING_OWNER))
            if owner is None or _is_stale(owner):
                self.store.delete_tree(self.staging_key(run_id))

    def claim_staging(self, run_id: str) -> Path | str:
        """Mark a run's staging folder as owned by this live process, so that another run's
        `recover()` keeps it (staging outside the lock); a dead owner's folder is dropped."""
        owner = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname()}
        self.store.write_json(self.staging_key(run_id, STAGING_OWNER), owner)
        key = self.staging_key(run_id)
        return self.store.local(key) if self.store.is_local else self.store.url(key)

    def discard_staging(self, run_id: str) -> None:
        """Drop the run's staging — unless a committed publication of this run still needs
        its staged files (a failure while applying it): `recover()` finishes it first."""
        plan = self.store.read_json(PLAN)
        if plan is not None and plan.get("run_id") == run_id:
            log.warning("keeping the staging of run %s: its publication is not applied", run_id)
            return
        self.store.delete_tree(self.staging_key(run_id))
        shutil.rmtree(self.scratch_dir(run_id), ignore_errors=True)

    def staged_parts(self, pattern: str | None) -> list[str]:
        """The staged Parquet files a staging path names (a glob of parts, or one file), on
        local disk or object storage."""
        if pattern is None:
            return []
        if not objectstore.is_object_url(pattern):
            path = Path(pattern)
            return [str(p) for p in sorted(path.parent.glob(path.name))]
        fs, key = objectstore.open_root(pattern)
        return sorted(objectstore.to_url(fs, found) for found in fs.glob(key))

    def drop_staged(self, location: str) -> None:
        """Delete a staged folder or file of a run (local) or every object under a staged
        prefix."""
        if not objectstore.is_object_url(location):
            if Path(location).is_file():
                Path(location).unlink(missing_ok=True)
            shutil.rmtree(location, ignore_errors=True)
            return
        fs, key = objectstore.open_root(location)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(key, recursive=True)

    def publish(
        self, run_id: str, changes: list[TableChange], state: Mapping[str, object] | None = None
    ) -> list[Published]:
        """Replace the given partitions of several tables as one publication, exactly once
        across tables (`servio.lake.publication`). `state` entries are merged into the lake state
        (`_servio/state`) in the same publication, so what a run remembers about its work
        (e.g. snapshot fingerprints) never disagrees with the data."""
        self._writable()
        started = time.perf_counter()
        try:
            return publication.publish(self, run_id, changes, state)
        finally:
            self.publish_seconds += time.perf_counter() - started

    def write_catalog(self) -> Path | None:
        """Rewrite the DuckDB catalog for the latest publication (`servio.lake.catalog`)."""
        return publication.write_catalog(self)

    # -- housekeeping ------------------------------------------------------------------
    def maintenance_due(self) -> bool:
        """Whether enough publications piled up small files to maintain the lake."""
        record = self.delta_table(PUBLICATIONS.name)
        return record is not None and len(record.file_uris()) >= MAINTAIN_AFTER_FILES

    def maintain(self, retention_hours: int) -> dict[str, dict[str, int]]:
        """Compact, checkpoint and vacuum every table (call under the lock, after
        `recover()`). Files that readers of the last `retention_hours` may still use stay."""
        self._writable()
        return publication.maintain(self, retention_hours)

    def _writable(self) -> None:
        if self.versions is not None:
            raise TypeError("a pinned lake is read-only")


_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(root: str) -> threading.Lock:
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(root, threading.Lock())


def _lock_holder(run_id: str) -> dict[str, object]:
    return {
        "run_id": run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(),
    }


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
