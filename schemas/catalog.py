"""The survey item catalog: which item measures which quality dimension and side.

The default catalog (the 22 SERVQUAL items, SPEC §1.5) ships as `item_catalog.csv`
beside this module; a deployment may replace it with its own file of the same shape.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CATALOG_PATH = Path(__file__).with_name("item_catalog.csv")
QUALITY_SIDES = ("technical", "functional")
SCALE_MIN, SCALE_MAX = 1, 7


@dataclass(frozen=True)
class Item:
    """One survey item, asked twice: as expectation and as perception."""

    code: str
    dimension: str
    side: str
    wording: str = ""

    @property
    def expectation_column(self) -> str:
        return f"exp_{self.code}"

    @property
    def perception_column(self) -> str:
        return f"perc_{self.code}"


@dataclass(frozen=True)
class ItemCatalog:
    items: tuple[Item, ...]

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Dimensions in catalog order, each once."""
        return tuple(dict.fromkeys(item.dimension for item in self.items))

    def items_of(self, dimension: str) -> tuple[Item, ...]:
        return tuple(item for item in self.items if item.dimension == dimension)

    def items_on_side(self, side: str) -> tuple[Item, ...]:
        return tuple(item for item in self.items if item.side == side)

    def side_of(self, dimension: str) -> str:
        return self.items_of(dimension)[0].side

    @property
    def answer_columns(self) -> tuple[str, ...]:
        """Every `exp_<item>` and `perc_<item>` column, expectations first."""
        return tuple(i.expectation_column for i in self.items) + tuple(
            i.perception_column for i in self.items
        )


class CatalogError(ValueError):
    pass


def load_catalog(path: Path = DEFAULT_CATALOG_PATH) -> ItemCatalog:
    """Read and check an item catalog CSV (columns: item, dimension, side[, wording])."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    items: list[Item] = []
    for number, row in enumerate(rows, start=2):
        code = (row.get("item") or "").strip().lower()
        dimension = (row.get("dimension") or "").strip().lower()
        side = (row.get("side") or "").strip().lower()
        if not code.isidentifier() or not dimension.isidentifier():
            raise CatalogError(f"{path}:{number}: item and dimension must be identifiers")
        if side not in QUALITY_SIDES:
            raise CatalogError(
                f"{path}:{number}: side must be one of {QUALITY_SIDES}, got {side!r}"
            )
        items.append(Item(code, dimension, side, (row.get("wording") or "").strip()))
    if not items:
        raise CatalogError(f"{path}: the catalog has no items")
    codes = [item.code for item in items]
    if len(set(codes)) != len(codes):
        raise CatalogError(f"{path}: item codes must be unique")
    catalog = ItemCatalog(tuple(items))
    for dimension in catalog.dimensions:
        if len({item.side for item in catalog.items_of(dimension)}) != 1:
            raise CatalogError(f"{path}: dimension {dimension!r} mixes quality sides")
    return catalog
