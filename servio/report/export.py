"""`servio export`: the customers of an action, one row each, as a file a CRM imports — the
same `customer_list` the report's lists are cut from, in full.

CSV: UTF-8, a header row, comma-separated, '\\n' line ends, ISO dates, plain decimals (no
exponent, '.' as decimal point), empty = null. Parquet: flat columns (date, string, int64,
float64, decimal(18,2)), snappy (what most importers read). Columns: docs/EXPORT.md,
generated from `customers.EXPORT_COLUMNS` (`python -m servio.report.export docs/EXPORT.md`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from servio.config import Settings
from servio.lake import Lake
from servio.report.customers import EXPORT_COLUMNS, EXPORT_SCHEMA, for_action
from servio.report.data import read_export
from servio.report.summaries import ACTION_ORDER

EXPORT_ACTIONS = (*ACTION_ORDER, "all")
FORMATS = ("csv", "parquet")
ARROW_TYPES = {
    pl.Date(): pa.date32(),
    pl.String(): pa.string(),
    pl.Int64(): pa.int64(),
    pl.Float64(): pa.float64(),
    pl.Decimal(18, 2): pa.decimal128(18, 2),
}
ARROW_SCHEMA = pa.schema([pa.field(c.name, ARROW_TYPES[c.dtype]) for c in EXPORT_COLUMNS])


@dataclass(frozen=True)
class Exported:
    path: Path
    as_of: date
    action: str
    rows: int


def default_export_path(action: str, as_of: date, file_format: str) -> Path:
    """`servio-<action>-<as_of>.<format>` in the working directory."""
    return Path(f"servio-{action}-{as_of.isoformat()}.{file_format}")


def export_customers(
    lake: Lake,
    settings: Settings,
    action: str,
    file_format: str,
    as_of: date | None = None,
    out: Path | None = None,
) -> Exported:
    """Write the customers of `action` (or `all`) of the snapshot `as_of` (default: the
    latest) to `out`. ValueError for an unknown action or format, or a missing snapshot."""
    if action not in EXPORT_ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(EXPORT_ACTIONS)}")
    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r}; expected csv or parquet")
    snapshot_date, customers = read_export(lake, settings, as_of)
    rows = for_action(customers, action)
    path = out or default_export_path(action, snapshot_date, file_format)
    write_export(rows, path, file_format)
    return Exported(path, snapshot_date, action, rows.height)


def write_export(rows: pl.DataFrame, path: Path, file_format: str) -> Path:
    """Write `rows` (in `EXPORT_COLUMNS`) as CSV or Parquet; the file appears whole or not at all."""
    if rows.schema != EXPORT_SCHEMA:
        raise ValueError(f"not an export frame: {rows.schema} != {EXPORT_SCHEMA}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        if file_format == "csv":
            rows.write_csv(temporary, float_scientific=False, null_value="")
        else:
            table = rows.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(ARROW_SCHEMA)
            pq.write_table(table, temporary, compression="snappy")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def export_dictionary() -> str:
    """docs/EXPORT.md: what `servio export` writes, column by column."""
    lines = [
        "# `servio export`: customers for a CRM",
        "",
        "Generated from `servio/report/customers.py` (`EXPORT_COLUMNS`) by",
        "`python -m servio.report.export docs/EXPORT.md`; do not edit by hand.",
        "",
        "```bash",
        "servio export --action retain_now --format csv          # the latest snapshot",
        "servio export --action all --format parquet --as-of 2026-10-31 --out customers.parquet",
        "```",
        "",
        f"`--action`: {', '.join(f'`{a}`' for a in EXPORT_ACTIONS)}. One row per customer of",
        "the snapshot with that action (`all`: every customer), ordered by action (in the order",
        'above), then by `profit_rank`. The report\'s "Which customers" lists are the first rows',
        "of the same frame, per action and per profit segment × service level cell.",
        "",
        "CSV: UTF-8 without BOM, a header row, comma-separated, `\\n` line ends, dates",
        "`YYYY-MM-DD`, numbers with `.` as decimal point and no exponent, money with 2",
        "decimals, empty = no value. Parquet: flat columns (date32, string, int64, float64,",
        "decimal(18,2)), snappy. The file is written under a temporary name and renamed: it",
        "appears whole or not at all. Without `--out`: `servio-<action>-<as_of>.<format>`.",
        "",
        "The names and types below are stable: a column is only ever added at the end.",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{c.name}` | {_type_name(c.dtype)} | {c.description} |" for c in EXPORT_COLUMNS]
    lines += [
        "",
        "`main_channel` counts the `interactions` table as published now, over the snapshot's",
        "window (`as_of_date` − `window_days`, `as_of_date`]; for an older snapshot whose",
        "contacts were corrected since, it may differ from what the snapshot saw.",
        "`p_alive`, `clv` and `value_at_risk` come from `customer_value` (SPEC §6) when that",
        "table has the snapshot and its `value_model` row; otherwise they are empty.",
        "",
    ]
    return "\n".join(lines)


def _type_name(dtype: pl.DataType) -> str:
    names = {pl.Date(): "date", pl.String(): "string", pl.Int64(): "int64"}
    names |= {pl.Float64(): "float64", pl.Decimal(18, 2): "decimal(18,2)"}
    return names[dtype]


if __name__ == "__main__":  # python -m servio.report.export docs/EXPORT.md
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/EXPORT.md")
    target.write_text(export_dictionary(), encoding="utf-8")
    print(f"wrote {target}")
