"""How a curated table is described (SPEC §4): its grain in one sentence, its key, its
partition column, its version column and every column with a one-line description."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

SCHEMA_VERSION = 1
MONEY = pl.Decimal(18, 2)
TIMESTAMP = pl.Datetime("us", "UTC")

DType = pl.DataType | type[pl.DataType]


@dataclass(frozen=True)
class Column:
    name: str
    dtype: DType
    description: str


@dataclass(frozen=True)
class CuratedTable:
    """A published table: its grain in one sentence, its key and how it is partitioned.
    `version_column` orders the versions of one key where several can arrive (the latest
    wins); None for tables computed whole."""

    name: str
    grain: str
    key: tuple[str, ...]
    partition_by: str | None
    columns: tuple[Column, ...]
    schema_version: int = SCHEMA_VERSION
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    version_column: str | None = None

    @property
    def schema(self) -> pl.Schema:
        """Every column, the partition key included."""
        return pl.Schema({c.name: c.dtype for c in self.columns})

    @property
    def file_schema(self) -> pl.Schema:
        """The columns stored inside the Parquet files: the partition key lives in the path."""
        return pl.Schema({c.name: c.dtype for c in self.columns if c.name != self.partition_by})
