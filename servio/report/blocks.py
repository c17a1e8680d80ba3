"""The blocks a report section is made of, as plain data for the page template: a chart
(its spec, collected by `Specs`, is drawn by vega-embed), a note, or a card with a table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import altair as alt

from servio.report.charts import themed


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    lede: str
    wide: bool = False
    kind: Literal["chart"] = "chart"


@dataclass(frozen=True)
class Note:
    title: str
    text: str
    warning: bool = False
    id: str | None = None
    kind: Literal["note"] = "note"


@dataclass(frozen=True)
class Cell:
    text: str
    value: str | None = None  # the exact value behind `text`, as data-value
    css_class: str = ""


@dataclass(frozen=True)
class Row:
    cells: list[Cell]
    css_class: str = ""
    key: str | None = None  # data-key, e.g. the customer_id of the row


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[Row]
    css_class: str = ""
    id: str | None = None


@dataclass(frozen=True)
class Link:
    before: str
    href: str
    text: str
    after: str = ""


@dataclass(frozen=True)
class More:
    """A line under a table: what it leaves out, and the command that has it all."""

    text: str
    command: str = ""


@dataclass(frozen=True)
class TableCard:
    id: str
    title: str
    ledes: list[str]
    table: Table
    more: More | None = None
    details_title: str = ""
    details: list[tuple[str, Table, More | None]] = field(default_factory=list)
    items_title: str = ""
    items: list[tuple[str, str]] = field(default_factory=list)
    link: Link | None = None
    after: list[str] = field(default_factory=list)
    wide: bool = False
    kind: Literal["table"] = "table"


Block = Chart | Note | TableCard


@dataclass
class Section:
    """A titled group of blocks on the page."""

    id: str
    title: str
    blocks: list[Block]
    lede: str = ""


@dataclass(frozen=True)
class Kpi:
    label: str
    value: str
    note: str
    bad: bool = False


class Specs:
    """The Vega-Lite specs of the page, by chart key; `add` returns the chart's block."""

    def __init__(self) -> None:
        self.specs: dict[str, dict[str, Any]] = {}

    def add(
        self, key: str, title: str, lede: str, spec: alt.TopLevelMixin, wide: bool = False
    ) -> Chart:
        self.specs[key] = themed(spec)
        return Chart(key, title, lede, wide)
