"""Readers see whole publications: while `Lake.publish` keeps replacing six partitions of
`interactions` (alternating two known contents), reader threads keep querying the table —
Polars `scan_delta`, DuckDB through the catalog file `servio.duckdb`, pyarrow through
`deltalake` — and every read returns exactly one publication's table: no read fails, none
mixes partitions of two publications, none has a row count no publication produced.

The publisher goes on until at least `PUBLICATIONS` publications and `READS` reads are done
(a deadline ends a hung test). One real lake per module (the pipeline steps, no Prefect).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable

from servio.lake.files import PartitionValue, TableChange
from servio.lake.lake import Lake
from servio.schemas.tables import INTERACTIONS
from servio.steps import sequence
from servio.tools.generate import GenerateOptions, generate
from tests import lakes
from tests.runs import REQUIRED_ONLY, run

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e

REPUBLISHED = "republished"  # agent_id marking every row of the second content
PUBLICATIONS = 41  # at least: second, first, second, …
READS = 1_000  # at least, all readers together
DEADLINE_SECONDS = 300  # safety net: the test ends even if something hangs

# What a read saw: partition → (rows, rows carrying the second content's marker).
Seen = dict[str, tuple[int, int]]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Two weeks of data (small reads, so 1,000 of them take seconds, not minutes) ingested
    by the run's sequence. Only `interactions` is read and republished here: the `required`
    checks (not the GX suite, ~1 s a file) and no snapshot, which this test never reads."""
    root = tmp_path_factory.mktemp("concurrent-lake")
    generate(root / "raw", GenerateOptions(customers=300, days=14, seed=3))
    settings = lakes.configure(root)
    run(settings, REQUIRED_ONLY, plan=sequence.Plan(snapshot=None, data_docs=False))
    return Lake(settings.curated_root)


@dataclass(frozen=True)
class Versions:
    """Two known contents of the same partitions, with different row counts."""

    first: dict[PartitionValue, pl.DataFrame]
    second: dict[PartitionValue, pl.DataFrame]
    untouched: dict[str, int]  # every other partition: its row count, which must not change

    def whole(self, second: bool) -> Seen:
        """What a read of one publication sees: all six partitions of one content."""
        seen = {key: (rows, 0) for key, rows in self.untouched.items()}
        for value, frame in (self.second if second else self.first).items():
            seen[str(value)] = (frame.height, frame.height if second else 0)
        return seen


def two_versions(lake: Lake, partitions: int = 6) -> Versions:
    """The published partitions as content one; half their rows, marked, as content two."""
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


def _seen(frame: pl.LazyFrame | pl.DataFrame) -> Seen:
    counted = (
        frame.lazy()
        .group_by(pl.col("interaction_date").cast(pl.String))
        .agg(pl.len(), (pl.col("agent_id") == REPUBLISHED).sum())
        .collect()
    )
    return {key: (n, marked) for key, n, marked in counted.iter_rows()}


def polars_read(lake: Lake) -> Seen:
    return _seen(pl.scan_delta(lake.table_url(INTERACTIONS.name)))


def duckdb_catalog_read(lake: Lake) -> Seen:
    # A BI tool's way: open the catalog file, query its view, close.
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        rows = con.execute(
            f"""
            SELECT CAST(interaction_date AS VARCHAR), count(*),
                   count(*) FILTER (WHERE agent_id = '{REPUBLISHED}')
            FROM interactions GROUP BY ALL
            """
        ).fetchall()
    return {key: (n, marked) for key, n, marked in rows}


def pyarrow_read(lake: Lake) -> Seen:
    dataset = DeltaTable(lake.table_url(INTERACTIONS.name)).to_pyarrow_dataset()
    data = dataset.to_table(columns=["interaction_date", "agent_id"])
    return _seen(pl.DataFrame(pl.from_arrow(data)))


READERS: dict[str, Callable[[Lake], Seen]] = {
    "polars_scan_delta": polars_read,
    "duckdb_catalog": duckdb_catalog_read,
    "pyarrow_deltalake": pyarrow_read,
}


@dataclass(frozen=True)
class Outcome:
    reader: str
    seen: Seen | None  # None: the read raised
    error: str | None = None


def read_until(name: str, lake: Lake, stop: threading.Event, out: list[Outcome]) -> None:
    read = READERS[name]
    while not stop.is_set():
        try:
            out.append(Outcome(name, read(lake)))
        except (Exception, pl.exceptions.PanicException) as error:  # panics: BaseException
            out.append(Outcome(name, None, f"{type(error).__name__}: {error}"))


@dataclass(frozen=True)
class ConcurrentRun:
    versions: Versions
    outcomes: list[Outcome]
    publications: int
    seconds: float


@pytest.fixture(scope="module")
def concurrent_run(lake: Lake) -> ConcurrentRun:
    """Republish six partitions again and again while three reader threads keep reading."""
    versions = two_versions(lake)
    assert len(versions.first) == 6
    assert all(versions.second[v].height < f.height for v, f in versions.first.items())
    stop = threading.Event()
    outcomes: list[Outcome] = []
    readers = [
        threading.Thread(target=read_until, args=(name, lake, stop, outcomes), daemon=True)
        for name in READERS
    ]
    started = time.monotonic()
    for reader in readers:
        reader.start()
    published = 0
    try:
        while published < PUBLICATIONS or len(outcomes) < READS:
            assert time.monotonic() - started < DEADLINE_SECONDS, (published, len(outcomes))
            contents = versions.second if published % 2 == 0 else versions.first
            run_id = f"republish-{published:04d}"
            with lake.lock(run_id, wait_seconds=10):
                lake.publish(run_id, [TableChange(INTERACTIONS, dict(contents))])
            published += 1
        # Publication k held the second content when k was even: the last one (published - 1)
        # was the first content when `published` is even. End on the second, whatever the count.
        if published % 2 == 0:
            with lake.lock("republish-last", wait_seconds=10):
                lake.publish("republish-last", [TableChange(INTERACTIONS, dict(versions.second))])
            published += 1
    finally:
        stop.set()
        for reader in readers:
            reader.join(DEADLINE_SECONDS)
    seconds = time.monotonic() - started
    print(
        f"{published} publications, {len(outcomes)} reads in {seconds:.1f}s: "
        + ", ".join(f"{r} {n}" for r, n in sorted(Counter(o.reader for o in outcomes).items()))
    )
    return ConcurrentRun(versions, list(outcomes), published, seconds)


def test_enough_reads_overlapped_enough_publications(concurrent_run: ConcurrentRun) -> None:
    """Not vacuous: ≥ 1,000 reads during ≥ 40 publications, every reader saw both contents."""
    assert concurrent_run.publications >= 40
    assert len(concurrent_run.outcomes) >= READS
    first, second = concurrent_run.versions.whole(False), concurrent_run.versions.whole(True)
    for reader in READERS:
        seen = [o.seen for o in concurrent_run.outcomes if o.reader == reader and o.seen]
        assert any(s == first for s in seen) and any(s == second for s in seen), reader


def test_no_read_fails(concurrent_run: ConcurrentRun) -> None:
    failed = [o for o in concurrent_run.outcomes if o.error is not None]
    assert failed == [], f"{len(failed)} failed reads, e.g. {failed[:3]}"


def test_no_read_mixes_two_publications(concurrent_run: ConcurrentRun) -> None:
    """Each read is one publication's table: all six partitions of one content (so also a
    row count some publication produced), never a mix, a doubled or a missing partition."""
    whole = (concurrent_run.versions.whole(False), concurrent_run.versions.whole(True))
    totals = {sum(rows for rows, _ in w.values()) for w in whole}
    mixed = [o for o in concurrent_run.outcomes if o.seen is not None and o.seen not in whole]
    assert mixed == [], f"{len(mixed)} mixed reads, e.g. {mixed[:1]}"
    seen_totals = {sum(r for r, _ in o.seen.values()) for o in concurrent_run.outcomes if o.seen}
    assert seen_totals <= totals


def test_the_table_ends_on_the_last_publication(lake: Lake, concurrent_run: ConcurrentRun) -> None:
    second = concurrent_run.versions.whole(True)
    for read in READERS.values():
        assert read(lake) == second


def test_the_files_of_earlier_publications_stay_until_vacuum(
    lake: Lake, concurrent_run: ConcurrentRun
) -> None:
    """Why no read failed: a replaced partition's old file is removed from the log, not from
    the disk (a reader that planned on it can still open it)."""
    table_dir = Path(lake.table_url(INTERACTIONS.name))
    on_disk = len(list(table_dir.glob("interaction_date=*/*.parquet")))
    assert on_disk >= len(lake.files(INTERACTIONS)) + 6 * concurrent_run.publications
