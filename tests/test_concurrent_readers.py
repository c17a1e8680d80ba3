"""Readers never see a half-published partition: while `Lake.publish` keeps replacing some
partitions of `interactions`, a reader thread querying the table (DuckDB and Polars over a
glob, a pyarrow dataset) sees each partition whole — its old version or its new one — never
a mix of the two, a partition twice, or a partition missing.

A query that overlaps a publication can still fail (DuckDB, Polars: they note a file's size
when planning and open it again later); that known limit is recorded as an xfail with counts.
One real lake per module: generated exports run through the pipeline steps (no Prefect).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest

from schemas.tables import INTERACTIONS
from servio.storage import Lake, PartitionValue, TableChange
from tests import lakes

REPUBLISHED = "republished"  # agent_id marking every row of the second version
PUBLICATIONS = 41  # alternating second, first, …, second; the reader runs until done
READER_DEADLINE_SECONDS = 120  # safety net: the test ends even if a publish hangs

# One observation of a partition: (rows, rows carrying the second version's marker).
Seen = tuple[int, int]


def build_lake(root: Path) -> Lake:
    return lakes.build_lake(root, "test-concurrent-readers")[1]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GX_ANALYTICS_ENABLED", "false")
        yield build_lake(tmp_path_factory.mktemp("concurrent-lake"))


@dataclass(frozen=True)
class Versions:
    """Two known contents of the same partitions, with different row counts."""

    first: dict[PartitionValue, pl.DataFrame]
    second: dict[PartitionValue, pl.DataFrame]
    untouched: dict[str, int]  # every other partition: its row count, which must not change

    def allowed(self) -> dict[str, set[Seen]]:
        allowed = {key: {(rows, 0)} for key, rows in self.untouched.items()}
        for value, frame in self.first.items():
            allowed[str(value)] = {(frame.height, 0), (self.second[value].height,) * 2}
        return allowed


def two_versions(lake: Lake, partitions: int = 6) -> Versions:
    """The published partitions as version one; half their rows, marked, as version two."""
    table = lake.scan(INTERACTIONS).collect()
    sizes = table.group_by("interaction_date").len().sort("len", "interaction_date")
    chosen = [d for d, n in sizes.iter_rows() if n >= 4][-partitions:]
    first = {d: table.filter(pl.col("interaction_date") == d) for d in chosen}
    second = {
        d: frame.head(frame.height // 2).with_columns(agent_id=pl.lit(REPUBLISHED))
        for d, frame in first.items()
    }
    untouched = {str(d): n for d, n in sizes.iter_rows() if d not in first}
    return Versions(first, second, untouched)


def duckdb_reader() -> Callable[[str, Path], dict[str, Seen]]:
    # One long-lived connection, as in a BI session: its caches must not serve stale files.
    con = duckdb.connect()

    def read(glob: str, table_dir: Path) -> dict[str, Seen]:
        rows = con.execute(
            f"""
            SELECT CAST(interaction_date AS VARCHAR), count(*),
                   count(*) FILTER (WHERE agent_id = '{REPUBLISHED}')
            FROM read_parquet('{glob}', hive_partitioning = true)
            GROUP BY ALL
            """
        ).fetchall()
        return {key: (n, marked) for key, n, marked in rows}

    return read


def _seen(frame: pl.LazyFrame | pl.DataFrame) -> dict[str, Seen]:
    counted = (
        frame.lazy()
        .group_by(pl.col("interaction_date").cast(pl.String))
        .agg(pl.len(), (pl.col("agent_id") == REPUBLISHED).sum())
        .collect()
    )
    return {key: (n, marked) for key, n, marked in counted.iter_rows()}


def polars_read(glob: str, table_dir: Path) -> dict[str, Seen]:
    return _seen(pl.scan_parquet(glob, hive_partitioning=True))


def pyarrow_read(glob: str, table_dir: Path) -> dict[str, Seen]:
    dataset = ds.dataset(table_dir, format="parquet", partitioning="hive")
    data = dataset.to_table(columns=["interaction_date", "agent_id"])
    return _seen(pl.DataFrame(pl.from_arrow(data)))


@dataclass(frozen=True)
class Outcome:
    reader: str
    seen: dict[str, Seen] | None  # None: the read raised
    error: str | None = None


def read_until(stop: threading.Event, table_dir: Path, started: threading.Event) -> list[Outcome]:
    """Read with every reader until told to stop, then once more, recording what each saw."""
    readers = {"duckdb": duckdb_reader(), "polars": polars_read, "pyarrow": pyarrow_read}
    glob = f"{table_dir.as_posix()}/**/*.parquet"
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + READER_DEADLINE_SECONDS
    while True:
        last = stop.is_set() or time.monotonic() > deadline
        for name, read in readers.items():
            try:
                outcomes.append(Outcome(name, read(glob, table_dir)))
            except (
                Exception,
                pl.exceptions.PanicException,
            ) as error:  # Polars panics are BaseException
                outcomes.append(Outcome(name, None, f"{type(error).__name__}: {error}"))
        started.set()
        if last:
            return outcomes


@dataclass(frozen=True)
class ConcurrentRun:
    versions: Versions
    outcomes: list[Outcome]


@pytest.fixture(scope="module")
def concurrent_run(lake: Lake) -> ConcurrentRun:
    """Republish six partitions PUBLICATIONS times while a thread keeps reading the table."""
    versions = two_versions(lake)
    assert len(versions.first) == 6
    assert all(versions.second[v].height < f.height for v, f in versions.first.items())
    stop, started = threading.Event(), threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(read_until, stop, lake.table_dir(INTERACTIONS), started)
        try:
            assert started.wait(READER_DEADLINE_SECONDS), "the reader never finished a read"
            for n in range(PUBLICATIONS):
                contents = versions.second if n % 2 == 0 else versions.first
                run_id = f"republish-{n:03d}"
                with lake.lock(run_id, wait_seconds=10):
                    lake.publish(run_id, [TableChange(INTERACTIONS, dict(contents))])
        finally:
            stop.set()
        outcomes = reading.result(timeout=READER_DEADLINE_SECONDS)
    return ConcurrentRun(versions, outcomes)


def test_every_read_sees_each_partition_whole(concurrent_run: ConcurrentRun) -> None:
    allowed = concurrent_run.versions.allowed()
    succeeded = [o for o in concurrent_run.outcomes if o.seen is not None]
    for outcome in succeeded:
        assert outcome.seen is not None
        assert outcome.seen.keys() == allowed.keys(), f"{outcome.reader}: a partition missing"
        wrong = {p: o for p, o in outcome.seen.items() if o not in allowed[p]}
        # (rows, marked) outside the allowed pair = two versions mixed, or a partition doubled
        assert wrong == {}, f"{outcome.reader} saw a partition that is neither version"


def test_the_reads_overlapped_the_publications(concurrent_run: ConcurrentRun) -> None:
    """Not vacuous: each reader read often, and saw both versions of every partition."""
    allowed = concurrent_run.versions.allowed()
    for reader in ("duckdb", "polars", "pyarrow"):
        seen = [o.seen for o in concurrent_run.outcomes if o.reader == reader and o.seen]
        assert len(seen) >= 4, reader
        for value in concurrent_run.versions.first:
            assert {s[str(value)] for s in seen} == allowed[str(value)], (reader, value)


def test_the_table_ends_on_the_last_publication(lake: Lake, concurrent_run: ConcurrentRun) -> None:
    versions = concurrent_run.versions
    expected = {key: (rows, 0) for key, rows in versions.untouched.items()}
    expected |= {str(v): (f.height, f.height) for v, f in versions.second.items()}
    table_dir = lake.table_dir(INTERACTIONS)
    assert polars_read(f"{table_dir.as_posix()}/**/*.parquet", table_dir) == expected


# A query that planned on a partition file (its size, its footer) and opens it after
# `os.replace` swapped in the new version fails on the footer; it never reads a mix.
STALE_PLAN = re.compile(
    r"TProtocolException|magic bytes|range\.end as u64 <= self\.size|out of specification"
)


def test_a_failed_read_is_only_a_stale_plan_never_a_missing_file(
    concurrent_run: ConcurrentRun,
) -> None:
    failed = [o for o in concurrent_run.outcomes if o.error is not None]
    unexplained = [o for o in failed if not STALE_PLAN.search(o.error or "")]
    assert unexplained == []


def test_no_read_fails_while_partitions_are_republished(concurrent_run: ConcurrentRun) -> None:
    failed = Counter(o.reader for o in concurrent_run.outcomes if o.error is not None)
    reads = Counter(o.reader for o in concurrent_run.outcomes)
    if failed:
        # Known limit of in-place `os.replace` (docs/BI.md, "Reading while servio publishes"):
        # DuckDB and Polars note a file's size when planning and open it again later.
        pytest.xfail(
            "reads failed while partitions were replaced under them: "
            + ", ".join(f"{r} {failed[r]}/{reads[r]}" for r in sorted(failed))
        )
