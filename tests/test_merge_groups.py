"""Publishing merges the touched partitions in groups bounded in values (rows × the table's
columns), so a wide table is merged fewer rows at a time: the tables come out the same
whatever the groups."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from servio.lake.lake import Lake
from servio.schemas.sources import SOURCES
from servio.schemas.tables import QUARANTINE
from servio.steps import merge, sequence
from servio.tools.generate import GenerateOptions, generate
from tests.lakes import configure
from tests.runs import run

STARTED_AT = datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_tables_are_the_same_whatever_the_merge_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    generate(raw, GenerateOptions(customers=120, days=30, seed=11))
    limits: dict[int, list[list[Any]]] = {}
    grouped = merge._partition_groups

    def spy(values: list[Any], rows: dict[Any, int], limit: int) -> Iterator[list[Any]]:
        groups = list(grouped(values, rows, limit))
        limits[limit] = groups
        return iter(groups)

    monkeypatch.setattr(merge, "_partition_groups", spy)

    def ingest(name: str) -> Lake:
        (tmp_path / name).mkdir()
        (tmp_path / name / "raw").symlink_to(raw)
        settings = configure(tmp_path / name)
        plan = sequence.Plan(snapshot=None, data_docs=False)
        run(
            settings,
            plan=plan,
            started_at=STARTED_AT,
            clock=lambda: STARTED_AT,
            run_id="20261130T120000Z-merge",
        )
        return Lake(settings.curated_root)

    whole = ingest("whole")
    assert all(len(groups) == 1 for groups in limits.values())
    limits.clear()
    monkeypatch.setattr(merge, "MERGE_GROUP_FIELDS", 73 * 40)
    grouped_lake = ingest("grouped")

    # Each table in many groups; the wider one (survey responses) fewer rows each.
    tables = [source.table(configure(tmp_path / "whole").catalog) for source in SOURCES.values()]
    widths = sorted(len(table.schema) for table in tables)
    assert widths[0] < widths[-1]
    assert sorted(limits) == sorted(73 * 40 // width for width in widths)
    assert all(len(groups) > 3 for groups in limits.values())
    for table in tables:
        expected = whole.scan(table).collect().sort(*table.key)
        assert expected.height > 0
        assert_frame_equal(grouped_lake.scan(table).collect().sort(*table.key), expected)
    quarantined = whole.scan(QUARANTINE).collect().sort(*QUARANTINE.key)
    assert_frame_equal(grouped_lake.scan(QUARANTINE).collect().sort(*QUARANTINE.key), quarantined)
