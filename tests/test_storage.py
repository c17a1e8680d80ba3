"""The curated lake: partition publish, manifests, crash recovery, the run lock."""

from __future__ import annotations

import json
import multiprocessing
import os
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from schemas.tables import CUSTOMER_SEGMENTS, INGEST_LEDGER
from servio.storage import PART_FILE, Lake, LakeBusy, TableChange


def _segments(as_of: date, customers: list[str]) -> pl.DataFrame:
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


def test_publish_writes_hive_partitions_without_the_key_inside(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.publish(
        "r1",
        [
            TableChange(
                CUSTOMER_SEGMENTS, {date(2026, 1, 1): _segments(date(2026, 1, 1), ["a", "b"])}
            )
        ],
    )
    path = tmp_path / "customer_segments" / "as_of_date=2026-01-01" / PART_FILE
    schema = pq.ParquetFile(path).schema_arrow
    assert "as_of_date" not in schema.names
    assert str(schema.field("customer_id").type) == "string"
    assert lake.scan(CUSTOMER_SEGMENTS).collect().equals(_segments(date(2026, 1, 1), ["a", "b"]))


def test_publish_replaces_a_partition_and_deletes_on_none(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    d1, d2 = date(2026, 1, 1), date(2026, 1, 2)
    lake.publish(
        "r1", [TableChange(CUSTOMER_SEGMENTS, {d1: _segments(d1, ["a"]), d2: _segments(d2, ["b"])})]
    )
    lake.publish("r2", [TableChange(CUSTOMER_SEGMENTS, {d1: _segments(d1, ["a", "c"]), d2: None})])
    assert lake.partitions(CUSTOMER_SEGMENTS) == ["2026-01-01"]
    assert sorted(lake.scan(CUSTOMER_SEGMENTS).collect()["customer_id"]) == ["a", "c"]
    manifest = json.loads((tmp_path / "customer_segments" / "_manifest.json").read_text())
    assert manifest["partitions"] == {"2026-01-01": 2}
    assert manifest["run_id"] == "r2"
    assert manifest["row_count"] == 2


def test_unpublished_table_scans_as_empty_with_its_schema(tmp_path: Path) -> None:
    frame = Lake(tmp_path).scan(INGEST_LEDGER).collect()
    assert frame.is_empty()
    assert frame.schema == INGEST_LEDGER.schema


def test_a_committed_journal_is_rolled_forward_by_recover(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    d1 = date(2026, 1, 1)
    lake.publish("r1", [TableChange(CUSTOMER_SEGMENTS, {d1: _segments(d1, ["a"])})])
    # Simulate a crash after the journal commit but before the moves: stage by hand.
    staged = (
        lake.staging_dir("r2")
        / "publish"
        / "customer_segments"
        / "as_of_date=2026-01-01"
        / PART_FILE
    )
    staged.parent.mkdir(parents=True)
    final = tmp_path / "customer_segments" / "as_of_date=2026-01-01" / PART_FILE
    _segments(d1, ["x", "y"]).drop("as_of_date").write_parquet(staged)
    journal = {
        "run_id": "r2",
        "moves": [
            [staged.relative_to(tmp_path).as_posix(), final.relative_to(tmp_path).as_posix()]
        ],
        "deletes": [],
    }
    (lake.control / "journal.json").write_text(json.dumps(journal))
    lake.recover()
    assert sorted(lake.scan(CUSTOMER_SEGMENTS).collect()["customer_id"]) == ["x", "y"]
    assert not (lake.control / "journal.json").exists()
    assert not (lake.control / "staging").exists()


def test_staging_without_a_journal_is_discarded_and_tables_unchanged(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    d1 = date(2026, 1, 1)
    lake.publish("r1", [TableChange(CUSTOMER_SEGMENTS, {d1: _segments(d1, ["a"])})])
    leftover = lake.staging_dir("dead") / "publish" / "x.parquet"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    lake.recover()
    assert not leftover.exists()
    assert lake.scan(CUSTOMER_SEGMENTS).collect()["customer_id"].to_list() == ["a"]


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
