"""The curated lake on Delta Lake: partition replacement, exactly-once publications across
tables (txn + roll-forward), the publication record and pinned reads, the data files'
statistics, the DuckDB catalog, housekeeping, and the run lock."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servio import faults, objectstore
from servio.lake import delta
from servio.lake.delta import arrow_file_schema
from servio.lake.files import PARQUET_OPTIONS, PLAN, TableChange, to_arrow
from servio.lake.lake import Lake, LakeBusy
from servio.schemas.snapshot_tables import CUSTOMER_SEGMENTS
from servio.schemas.table import MONEY, TIMESTAMP, Column, CuratedTable
from servio.schemas.tables import INGEST_LEDGER, INTERACTIONS, QUARANTINE
from tests.runs import REQUIRED_ONLY, run
from tests.test_hostile_corpus import COLUMNS, csv_text, good_row, land

D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)


def _segments(as_of: dt.date, customers: list[str]) -> pl.DataFrame:
    n = len(customers)
    return pl.DataFrame(
        {
            "as_of_date": [as_of] * n,
            "customer_id": customers,
            "profit_segment": ["core"] * n,
            "service_level": ["met"] * n,
            "rfm_segment": ["new"] * n,
            "action": ["grow"] * n,
        },
        schema=CUSTOMER_SEGMENTS.schema,
    )


def _ledger(seqs: list[int]) -> pl.DataFrame:
    rows = [
        {
            "source_seq": s,
            "source_file": f"f{s}.csv",
            "sha256": f"{s:064d}",
            "status": "ingested",
            "rows_read": s,
        }
        for s in seqs
    ]
    return pl.DataFrame(rows).select(
        pl.col(name).cast(dtype) if name in rows[0] else pl.lit(None, dtype).alias(name)
        for name, dtype in INGEST_LEDGER.schema.items()
    )


def _customers(lake: Lake) -> list[str]:
    return sorted(lake.scan(CUSTOMER_SEGMENTS).collect()["customer_id"])


def test_publish_writes_a_delta_table_of_hive_partitions_without_the_key_inside(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path)
    lake.publish("r1", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["a", "b"])})])
    table_dir = tmp_path / "customer_segments"
    [data] = lake.files(CUSTOMER_SEGMENTS)
    assert Path(data).parent == table_dir / "as_of_date=2026-01-01"
    assert sorted(p.name for p in table_dir.iterdir()) == ["_delta_log", "as_of_date=2026-01-01"]
    schema = pq.ParquetFile(data).schema_arrow
    assert "as_of_date" not in schema.names
    assert schema.equals(arrow_file_schema(CUSTOMER_SEGMENTS), check_metadata=False)
    assert lake.scan(CUSTOMER_SEGMENTS).collect().equals(_segments(D1, ["a", "b"]))
    table = lake.delta_table("customer_segments")
    assert table.metadata().partition_columns == ["as_of_date"]
    assert table.metadata().description == CUSTOMER_SEGMENTS.grain
    assert table.metadata().configuration["servio.key"] == "as_of_date,customer_id"


def test_publish_replaces_a_partition_and_deletes_on_none(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.publish(
        "r1", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["a"]), D2: _segments(D2, ["b"])})]
    )
    lake.publish("r2", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["a", "c"]), D2: None})])
    assert lake.partitions(CUSTOMER_SEGMENTS) == ["2026-01-01"]
    assert _customers(lake) == ["a", "c"]
    table = lake.delta_table("customer_segments")
    assert table.transaction_version(delta.APP_ID) == 2  # the publication number
    assert table.history(1)[0]["servio.run_id"] == "r2"
    # The superseded files stay on disk (readers of older versions) until vacuum.
    assert len(list((tmp_path / "customer_segments").rglob("*.parquet"))) == 3


def test_two_changes_of_one_table_are_one_commit(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.publish(
        "r1",
        [
            TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["a"])}),
            TableChange(CUSTOMER_SEGMENTS, {D2: _segments(D2, ["b"])}),
        ],
    )
    assert _customers(lake) == ["a", "b"]
    assert lake.delta_table("customer_segments").version() == 1  # created, then one commit


def test_unpublished_table_scans_as_empty_with_its_schema(tmp_path: Path) -> None:
    frame = Lake(tmp_path).scan(INGEST_LEDGER).collect()
    assert frame.is_empty()
    assert frame.schema == INGEST_LEDGER.schema


class _Crash(Exception):
    pass


def _crash(nth: int = 1):  # type: ignore[no-untyped-def]
    """A fault-point action: a crash (an exception, no cleanup of the publication) the nth
    time the point is reached."""
    hits = {"n": 0}

    def action() -> None:
        hits["n"] += 1
        if hits["n"] == nth:
            raise _Crash(nth)

    return action


def test_a_publication_interrupted_between_two_table_commits_is_rolled_forward(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path)
    lake.publish("r1", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["a"])})])
    ledger_before = lake.delta_table("ingest_ledger")
    with faults.inject("between_table_commits", _crash(1)), pytest.raises(_Crash):
        lake.publish(
            "r2",
            [
                TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["x", "y"])}),
                TableChange(INGEST_LEDGER, {None: _ledger([1, 2])}),
            ],
        )
    assert (tmp_path / PLAN).exists()
    segments = lake.delta_table("customer_segments")
    assert segments.transaction_version(delta.APP_ID) == 2  # committed before the crash
    assert ledger_before is None and lake.delta_table("ingest_ledger") is None
    # Readers pinned at the latest publication still see publication 1 whole.
    assert _customers(lake.pinned()) == ["a"]
    committed_version = segments.version()

    lake.recover()
    assert not (tmp_path / PLAN).exists()
    assert _customers(lake) == ["x", "y"]
    assert lake.scan(INGEST_LEDGER).collect()["source_seq"].to_list() == [1, 2]
    # The committed table was skipped by its txn, not committed twice.
    assert lake.delta_table("customer_segments").version() == committed_version
    record = lake.publications().filter(pl.col("publication") == 2)
    assert dict(record.select("table_name", "changed").iter_rows()) == {
        "customer_segments": True,
        "ingest_ledger": True,
    }
    assert _customers(lake.pinned()) == ["x", "y"]


def test_staging_without_a_plan_is_discarded_and_tables_unchanged(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.publish("r1", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["a"])})])
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "customer_segments").rglob("*"))
    with faults.inject("before_publication_commit", _crash()), pytest.raises(_Crash):
        lake.publish("r2", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["z"])})])
    assert list(lake.staging_dir("r2").rglob("*.parquet"))  # staged, outside every table
    lake.recover()
    assert not lake.staging_dir("r2").exists()
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "customer_segments").rglob("*"))
    assert after == before
    assert _customers(lake) == ["a"]


def test_every_file_a_publication_stages_is_synced_before_its_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RELIABILITY.md row 2: a data file is on disk (fsynced) before the plan, the commit
    point, names it — the merge's partition files too, which are written on threads and
    synced apart from their writing."""
    config = land(tmp_path, [], "synced")  # five days: five interactions partitions
    synced: set[tuple[int, int]] = set()
    real_fsync = objectstore.fsync

    def recording_fsync(path: Path) -> None:
        real_fsync(path)
        info = os.stat(path)
        synced.add((info.st_dev, info.st_ino))

    staged: list[Path] = []
    unsynced: list[Path] = []

    def check(**_: object) -> None:  # the staged files are renamed, not rewritten: same inode
        found = list((tmp_path / "curated" / "_servio" / "staging").glob("*/publish/*/*.parquet"))
        staged.extend(found)
        unsynced.extend(p for p in found if (p.stat().st_dev, p.stat().st_ino) not in synced)

    monkeypatch.setattr(objectstore, "fsync", recording_fsync)
    with faults.inject("before_publication_commit", check):
        run(config, REQUIRED_ONLY)
    assert len({p.parent.name for p in staged}) >= 2  # interactions and the ledger at least
    assert sum(p.parent.name == "interactions" for p in staged) == 5
    assert unsynced == []


def test_each_merged_partition_file_holds_its_own_rows_sorted_by_key(tmp_path: Path) -> None:
    """The merge sorts a group of partitions once and writes each partition as a slice of it:
    every file holds exactly its day's rows, in key order, and nothing is lost."""
    config = land(tmp_path, [], "first")
    rows = [good_row("more", k) for k in range(40)]  # ten days, four rows each
    (tmp_path / "raw" / "interactions" / "more.csv").write_text(
        csv_text(list(COLUMNS), [[r[c] for c in COLUMNS] for r in rows])
    )
    run(config, REQUIRED_ONLY)
    files = Lake(tmp_path / "curated").files(INTERACTIONS)
    seen = 0
    for data in files:
        day = dt.date.fromisoformat(Path(data).parent.name.removeprefix("interaction_date="))
        frame = pl.read_parquet(data)
        assert frame["started_at"].dt.date().unique().to_list() == [day]
        assert frame["interaction_id"].to_list() == sorted(frame["interaction_id"])
        seen += frame.height
    assert len(files) == 10 and seen == 45


def test_the_record_pins_every_table_and_older_publications_stay_readable(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path)
    lake.publish("r1", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["a"])})])
    lake.publish("r2", [TableChange(INGEST_LEDGER, {None: _ledger([1])})])
    lake.publish("r3", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["b", "c"])})])
    record = lake.publications()
    assert record["publication"].unique().to_list() == [1, 2, 3]
    third = dict(
        record.filter(pl.col("publication") == 3).select("table_name", "table_version").iter_rows()
    )
    assert third == {"customer_segments": 2, "ingest_ledger": 1}
    assert _customers(lake.pinned(1)) == ["a"]
    assert lake.pinned(1).scan(INGEST_LEDGER).collect().is_empty()  # not yet published
    assert _customers(lake.pinned(2)) == ["a"]
    assert _customers(lake.pinned()) == ["b", "c"]
    with pytest.raises(TypeError, match="read-only"):
        lake.pinned().publish("r4", [])


def test_the_duckdb_catalog_views_the_latest_publication(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.publish("r1", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["a", "b"])})])
    session = duckdb.connect(str(lake.catalog_path), read_only=True)  # a BI session, left open
    lake.publish(
        "r2", [TableChange(CUSTOMER_SEGMENTS, {D1: None, D2: _segments(D2, ["c", "d", "e"])})]
    )
    # The open session keeps its publication whole: the files it names are still there.
    assert session.execute("SELECT count(*) FROM customer_segments").fetchall() == [(2,)]
    session.close()
    with duckdb.connect(str(tmp_path / "servio.duckdb"), read_only=True) as con:
        seen = con.execute("SELECT as_of_date, count(*) FROM customer_segments GROUP BY ALL")
        assert seen.fetchall() == [(D2, 3)]
        publication = con.execute("SELECT DISTINCT publication FROM servio_publication")
        assert publication.fetchall() == [(2,)]
        types = {row[0]: row[1] for row in con.execute("DESCRIBE customer_segments").fetchall()}
        assert types["as_of_date"] == "DATE" and types["customer_id"] == "VARCHAR"
    assert not list(tmp_path.glob("*.tmp"))


# ---------------------------------------------------------------------------------------
# the statistics servio writes into the Delta log must be true bounds (readers prune by them)

MONEY_VALUES = st.decimals(
    min_value=Decimal("-999999999999.99"),
    max_value=Decimal("999999999999.99"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)
STAMPS = st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(dt.UTC)
)
FRAME_SCHEMA = {"text": pl.String, "amount": MONEY, "stamp": TIMESTAMP, "count": pl.Int64}


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 40))
    columns = {
        "text": draw(st.lists(st.none() | TEXT, min_size=n, max_size=n)),
        "amount": draw(st.lists(st.none() | MONEY_VALUES, min_size=n, max_size=n)),
        "stamp": draw(st.lists(st.none() | STAMPS, min_size=n, max_size=n)),
        "count": draw(st.lists(st.none() | st.integers(-(2**62), 2**62), min_size=n, max_size=n)),
    }
    return pl.DataFrame(columns, schema=FRAME_SCHEMA)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=frames(), row_group=st.sampled_from([3, 1_000_000]))
def test_file_statistics_are_true_bounds(
    frame: pl.DataFrame, row_group: int, tmp_path: Path
) -> None:
    table = CuratedTable(
        "t",
        "One row per thing.",
        ("text",),
        None,
        tuple(Column(n, d, n) for n, d in FRAME_SCHEMA.items()),
    )
    path = tmp_path / f"f{os.urandom(4).hex()}.parquet"
    # Several row groups, or one: bounds are combined across groups.
    options = {**PARQUET_OPTIONS, "row_group_size": row_group}
    pq.write_table(to_arrow(frame, table), path, **options)
    stats = json.loads(delta.describe_file(path, "f.parquet", None).stats)
    assert stats["numRecords"] == frame.height
    for name in FRAME_SCHEMA:
        values = frame[name].drop_nulls()
        assert stats["nullCount"][name] == frame[name].null_count()
        if name not in stats["minValues"]:
            # No bound is allowed (pruning only); text too long for one, or all null.
            assert values.is_empty() or name == "text"
            continue
        low, high = stats["minValues"][name], stats["maxValues"][name]
        if name == "stamp":
            low, high = (dt.datetime.fromisoformat(v.replace("Z", "+00:00")) for v in (low, high))
        if name == "amount":
            low, high = Decimal(str(low)), Decimal(str(high))
        assert low == values.min() and high == values.max(), name
    raw = delta.describe_file(path, "f.parquet", None).stats
    for value in frame["amount"].drop_nulls():
        if value in (frame["amount"].min(), frame["amount"].max()):
            assert str(value) in raw  # exact decimal text, not a rounded float


# ---------------------------------------------------------------------------------------
# housekeeping


def test_maintain_compacts_the_record_and_vacuums_only_what_the_retention_allows(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path)
    for n in range(4):
        lake.publish(f"r{n}", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, [f"c{n}"])})])
    folder = tmp_path / "customer_segments" / "as_of_date=2026-01-01"
    assert len(list(folder.glob("*.parquet"))) == 4  # three superseded, not yet vacuumed
    assert len(lake.delta_table("publications").file_uris()) == 4  # one per publication
    # Files no commit names, as a writer killed before committing leaves: one 30 h old.
    [current] = lake.files(CUSTOMER_SEGMENTS)
    aged, fresh = folder / "part-orphan-old.parquet", folder / "part-orphan-new.parquet"
    for orphan in (aged, fresh):
        orphan.write_bytes(Path(current).read_bytes())
    old = time.time() - 30 * 3600
    os.utime(aged, (old, old))

    done = lake.maintain(retention_hours=24)
    assert done["publications"]["files_compacted"] == 4
    assert len(lake.delta_table("publications").file_uris()) == 1
    # Superseded 0 h ago and the fresh orphan stay: a reader may still be on them.
    assert done["customer_segments"]["files_deleted"] == 1 and not aged.exists()
    assert len(list(folder.glob("*.parquet"))) == 5
    assert list((tmp_path / "customer_segments" / "_delta_log").glob("*.checkpoint.parquet"))

    done = lake.maintain(retention_hours=0)  # only possible here: the setting is ≥ 1 h
    assert done["customer_segments"]["files_deleted"] == 4
    assert [p.as_posix() for p in folder.glob("*.parquet")] == [current]
    assert _customers(lake) == ["c3"] == _customers(lake.pinned())


def test_the_retention_setting_is_validated_and_never_zero_by_default() -> None:
    from servio.config import ConfigError, Settings, load_settings

    assert Settings().vacuum_retention_hours >= 24
    with pytest.raises(ConfigError, match="vacuum_retention_hours"):
        load_settings(environ={"SERVIO_VACUUM_RETENTION_HOURS": "0"})


def test_quarantine_partitions_by_source_text(tmp_path: Path) -> None:
    rows = pl.DataFrame(
        {"source": ["surveys"], "source_file": ["a.csv"], "reason_codes": ["x"]}
    ).select(
        pl.col(n).cast(t)
        if n in ("source", "source_file", "reason_codes")
        else pl.lit(None, t).alias(n)
        for n, t in QUARANTINE.schema.items()
    )
    lake = Lake(tmp_path)
    lake.publish("r1", [TableChange(QUARANTINE, {"surveys": rows})])
    assert lake.partitions(QUARANTINE) == ["surveys"]
    assert lake.scan(QUARANTINE).collect()["source"].to_list() == ["surveys"]


# ---------------------------------------------------------------------------------------
# the run lock


def test_lock_refuses_a_second_live_holder(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    with lake.lock("first"), pytest.raises(LakeBusy, match="busy"), lake.lock("second"):
        pass


def _die() -> None:
    os._exit(0)


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    import socket

    process = multiprocessing.get_context("spawn").Process(target=_die)
    process.start()
    process.join()
    lake = Lake(tmp_path)
    lake.control.mkdir(parents=True)
    (lake.control / "run.lock").write_text(
        json.dumps({"run_id": "dead", "pid": process.pid, "host": socket.gethostname()})
    )
    with lake.lock("alive"):
        holder = json.loads((lake.control / "run.lock").read_text())
        assert holder["run_id"] == "alive"
    assert not (lake.control / "run.lock").exists()


def test_servio_maintain_compacts_and_vacuums_under_the_lock(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from servio import cli

    lake = Lake(tmp_path / "curated")
    for n in range(3):
        lake.publish(f"r{n}", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, [f"c{n}"])})])
    config = tmp_path / "servio.toml"
    config.write_text(f'curated_root = "{tmp_path / "curated"}"\n')
    done = CliRunner().invoke(cli.app, ["maintain", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert "publications" in done.output and "retention 168 h" in done.output
    assert len(lake.delta_table("publications").file_uris()) == 1  # compacted
    kept = (tmp_path / "curated" / "customer_segments").glob("as_of_date=*/*.parquet")
    assert len(list(kept)) == 3  # superseded 0 h ago: kept
    with lake.lock("someone-else"):
        busy = CliRunner().invoke(cli.app, ["maintain", "--config", str(config)])
    assert busy.exit_code == 3 and "busy" in busy.output
    refused = CliRunner().invoke(
        cli.app, ["maintain", "--config", str(config), "--retention-hours", "0"]
    )
    assert refused.exit_code == 2 and "vacuum_retention_hours" in refused.output
    assert "SERVIO_VACUUM_RETENTION_HOURS" not in os.environ  # the override was for that run


@pytest.mark.e2e
def test_servio_maintains_by_itself_once_the_record_holds_enough_small_files(
    tmp_path: Path,
) -> None:
    from servio.config import Settings
    from servio.lake.lake import MAINTAIN_AFTER_FILES
    from servio.steps.maintenance import maintain_if_due
    from tests.runs import context

    lake = Lake(tmp_path)
    settings = Settings(curated_root=str(tmp_path))
    for n in range(MAINTAIN_AFTER_FILES):
        lake.publish(f"r{n}", [TableChange(INGEST_LEDGER, {None: _ledger([n + 1])})])
        assert lake.maintenance_due() == (n + 1 >= MAINTAIN_AFTER_FILES)
        maintain_if_due(context(settings))  # what publish_ingest and build_snapshot call
    assert len(lake.delta_table("publications").file_uris()) == 1  # compacted at the 50th
    assert not lake.maintenance_due()
    assert lake.scan(INGEST_LEDGER).collect()["source_seq"].to_list() == [MAINTAIN_AFTER_FILES]


def test_maintain_rewrites_the_catalog_of_a_moved_lake(tmp_path: Path) -> None:
    import shutil

    Lake(tmp_path / "old").publish(
        "r1", [TableChange(CUSTOMER_SEGMENTS, {D1: _segments(D1, ["a"])})]
    )
    shutil.move(tmp_path / "old", tmp_path / "new")
    lake = Lake(tmp_path / "new")
    with (
        pytest.raises(duckdb.IOException),  # the views still name the old paths
        duckdb.connect(str(lake.catalog_path), read_only=True) as con,
    ):
        con.execute("SELECT count(*) FROM customer_segments").fetchall()
    lake.maintain(retention_hours=168)
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM customer_segments").fetchall() == [(1,)]
