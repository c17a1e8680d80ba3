"""The DuckDB catalog: one database file with a view per table over exactly the data files of
the latest publication, so SQL tools (DuckDB CLI, DBeaver, Metabase, Superset, Evidence)
that attach it always see one consistent lake, whatever is being published meanwhile.

The file is rebuilt after every publication into a temporary file and moved into place with
one `os.replace`: a tool that opens it gets the previous publication or the new one. The
files a view names stay on disk until `vacuum` (retention ≥ 24 h), so an open session keeps
working; it sees the next publication once it reattaches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

log = logging.getLogger("servio.lake.catalog")


@dataclass(frozen=True)
class CatalogTable:
    name: str
    version: int
    files: list[str]  # absolute paths or s3:// URLs, as `DeltaTable.file_uris()` gives them
    schema: pa.Schema  # every column, the partition key included
    partition_by: str | None
    # Every file holds every column (known from the log's statistics): DuckDB may then take
    # the first file's schema instead of opening every footer (`union_by_name`) per query.
    uniform: bool = False


def duckdb_type(kind: pa.DataType) -> str:
    """The DuckDB type of a contract column (SPEC §4 types only)."""
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    if pa.types.is_decimal(kind):
        return f"DECIMAL({kind.precision},{kind.scale})"
    simple = {
        pa.string(): "VARCHAR",
        pa.int64(): "BIGINT",
        pa.int32(): "INTEGER",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
    }
    return simple[kind]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _name(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _source(table: CatalogTable) -> str:
    files = ", ".join(_literal(f) for f in table.files)
    options = [] if table.uniform else ["union_by_name = true"]
    if table.partition_by:
        kind = duckdb_type(table.schema.field(table.partition_by).type)
        options += [
            "hive_partitioning = true",
            f"hive_types = {{{_literal(table.partition_by)}: {kind}}}",
        ]
    else:
        options.append("hive_partitioning = false")
    return f"read_parquet([{files}], {', '.join(options)})"


def create_view(con: Any, table: CatalogTable) -> None:
    """`CREATE VIEW` over the table's files, columns in contract order with contract types; a
    column no file has yet (just added to the contract) reads as NULL. Binding the view reads
    every file's footer when the files' columns differ, so it is bound once unless a column is
    missing from every file."""
    columns = [(f.name, duckdb_type(f.type)) for f in table.schema]
    if not table.files:
        select = ", ".join(f"CAST(NULL AS {kind}) AS {_name(name)}" for name, kind in columns)
        con.execute(f"CREATE VIEW {_name(table.name)} AS SELECT {select} WHERE false")
        return
    import duckdb  # only where a catalog is written (DuckDB costs ~0.2 s to import)

    source = _source(table)
    view = f"CREATE VIEW {_name(table.name)} AS SELECT "
    try:
        con.execute(view + ", ".join(_name(name) for name, _ in columns) + f" FROM {source}")
    except duckdb.BinderException:
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        select = ", ".join(
            _name(name) if name in present else f"CAST(NULL AS {kind}) AS {_name(name)}"
            for name, kind in columns
        )
        con.execute(view + select + f" FROM {source}")


def write_catalog(
    path: Path, tables: list[CatalogTable], publication: int, published_at: datetime
) -> Path | None:
    """Write the catalog for this publication, replacing the previous one atomically. Returns
    None when DuckDB cannot read the files here (s3:// without the httpfs extension)."""
    import duckdb

    remote = any(f.startswith("s3://") for t in tables for f in t.files)
    if remote and not _s3_ready(duckdb.connect()):
        log.warning(
            "the DuckDB catalog %s is not written: DuckDB's httpfs extension cannot be loaded "
            "here to read s3:// files (docs/OBJECT_STORAGE.md)",
            path,
        )
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        with _new_database(temporary, remote) as con:
            ordered = sorted(tables, key=lambda t: t.name)
            for table in ordered:
                create_view(con, table)
            rows = ", ".join(
                f"({publication}, TIMESTAMPTZ {_literal(published_at.isoformat())}, "
                f"{_literal(t.name)}, {t.version}, {len(t.files)})"
                for t in ordered
            )
            con.execute(
                f"CREATE TABLE servio_publication AS SELECT * FROM (VALUES {rows}) "
                "AS p(publication, published_at, table_name, table_version, files)"
            )
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    return path


@contextlib.contextmanager
def _new_database(path: Path, remote: bool) -> Iterator[Any]:
    """A connection whose default database is a new DuckDB file at `path`, closed (and the
    file complete) when the block ends. Local files are attached to one in-memory DuckDB of
    this process: starting a DuckDB costs ~25 ms of CPU, twice per run, an ATTACH a few. An
    s3:// lake's catalog gets a connection of its own (httpfs and a temporary secret with
    this moment's credentials)."""
    import duckdb

    if remote:
        con = duckdb.connect(str(path))
        try:
            _s3_ready(con)
            yield con
        finally:
            con.close()
        return
    con = _in_memory().cursor()
    alias = f"servio_catalog_{uuid.uuid4().hex}"
    try:
        con.execute(f"ATTACH {_literal(str(path))} AS {alias}")
        try:
            con.execute(f"USE {alias}")
            yield con
        finally:
            con.execute("USE memory")
            con.execute(f"DETACH {alias}")  # checkpoints and closes the file
    finally:
        con.close()


_DUCKDB: dict[int, Any] = {}  # process id → the in-memory DuckDB that attaches catalog files
_DUCKDB_GUARD = threading.Lock()


def _in_memory() -> Any:
    import duckdb

    with _DUCKDB_GUARD:
        if os.getpid() not in _DUCKDB:  # a forked child starts its own
            _DUCKDB.clear()
            _DUCKDB[os.getpid()] = duckdb.connect()
        return _DUCKDB[os.getpid()]


def _s3_ready(con: object) -> bool:
    """httpfs loaded and the AWS environment's credentials and endpoint in a temporary secret
    (kept in memory, never written into the catalog file)."""
    try:
        con.execute("LOAD httpfs")  # type: ignore[attr-defined]
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        options = ["TYPE s3", "PROVIDER credential_chain"]
        if endpoint:
            host = endpoint.split("://", 1)[-1]
            options += [f"ENDPOINT {_literal(host)}", "URL_STYLE 'path'"]
            options.append(f"USE_SSL {str(endpoint.startswith('https')).lower()}")
        con.execute(f"CREATE TEMPORARY SECRET servio_s3 ({', '.join(options)})")  # type: ignore[attr-defined]
    except Exception:  # duckdb.Error: the extension is missing and cannot be installed here
        return False
    return True
