"""The source registry: per kind of export, its folder, its raw contract and the curated table
it is published to (whose key, version and partition columns decide the merge). Code that
treats the sources differently looks them up here; `servio.transforms.curate` holds one curate
function per curated table, found by the table's name.

A file lands in `<raw_root>/<source>/…`; anything else is of the `unknown` source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .catalog import ItemCatalog
from .channels import ChannelRate
from .raw import INTERACTIONS_RAW, RawContract, surveys_raw
from .table import CuratedTable
from .tables import INTERACTIONS, survey_responses_table

UNKNOWN_SOURCE = "unknown"  # a file at the raw root, or under a folder that names no source


@dataclass(frozen=True)
class Source:
    """One kind of export. Its contract and table may depend on the item catalog (the survey
    item columns), hence functions of it."""

    name: str  # the folder under the raw root; `source` in the ledger and the quarantine
    raw_contract: Callable[[ItemCatalog], RawContract]
    curated_table: Callable[[ItemCatalog], CuratedTable]

    def contract(self, catalog: ItemCatalog) -> RawContract:
        return self.raw_contract(catalog)

    def table(self, catalog: ItemCatalog) -> CuratedTable:
        """The table its valid rows are merged into: key, `version_column` and
        `partition_by` say how versions of one key compete and where rows go."""
        return self.curated_table(catalog)


def _interactions_contract(_catalog: ItemCatalog) -> RawContract:
    return INTERACTIONS_RAW


def _interactions_table(_catalog: ItemCatalog) -> CuratedTable:
    return INTERACTIONS


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source("interactions", _interactions_contract, _interactions_table),
        Source("surveys", surveys_raw, survey_responses_table),
    )
}
SOURCE_NAMES = tuple(SOURCES)


def source_tables(catalog: ItemCatalog) -> dict[str, CuratedTable]:
    """The curated tables the sources are published to, by table name, in registry order."""
    return {table.name: table for table in (s.table(catalog) for s in SOURCES.values())}


@dataclass(frozen=True)
class Curation:
    """The settings curated rows depend on besides the rows themselves (SPEC §2)."""

    currency: str  # the reporting currency
    gross_margin_rate: float  # margin when an export carries none
    rates: Mapping[str, ChannelRate]  # cost to serve per channel
    catalog: ItemCatalog
    weights: Mapping[str, float]  # dimension importance, sums to 1
