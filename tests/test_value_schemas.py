"""The SPEC §6 table declarations: grain, key, partitioning and types as SPEC §4 requires."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from servio.config import Settings
from servio.lake.delta import arrow_file_schema
from servio.schemas.snapshot_tables import customer_value_table, value_tables
from servio.schemas.table import MONEY
from servio.schemas.tables import curated_tables

SNAPSHOT = {"customer_value", "value_model", "quality_drivers", "service_levels"}


def test_every_value_table_is_a_snapshot_partitioned_by_as_of_date() -> None:
    tables = value_tables(365)
    assert set(tables) == SNAPSHOT
    for table in tables.values():
        assert table.partition_by == "as_of_date"
        assert table.key[0] == "as_of_date"
        assert set(table.key) <= set(table.schema)
        assert table.grain.startswith("One row per as_of_date × ")
    published = curated_tables(Settings().catalog, 365)
    assert {name: published[name] for name in SNAPSHOT} == tables  # published with snapshots


@pytest.mark.parametrize("horizon", [1, 90, 365, 730])
def test_the_expected_purchases_column_is_named_after_the_horizon(horizon: int) -> None:
    names = customer_value_table(horizon).schema.names()
    assert f"expected_purchases_{horizon}d" in names
    assert sum(name.startswith("expected_purchases_") for name in names) == 1


def test_types_follow_the_spec() -> None:
    value = customer_value_table(365).schema
    for money in ("clv", "value_at_risk"):
        assert value[money] == MONEY
    for rate in ("avg_repeat_spend", "p_alive", "expected_purchases_365d", "expected_spend"):
        assert value[rate] == pl.Float64
    for table in value_tables(365).values():
        for field in arrow_file_schema(table):
            assert not pa.types.is_unsigned_integer(field.type)
            assert not pa.types.is_dictionary(field.type)
            assert not pa.types.is_large_string(field.type)
            assert not pa.types.is_string_view(field.type)
        assert "as_of_date" not in table.file_schema  # in the partition path only
