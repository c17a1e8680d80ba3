"""The report page: frames → sections of blocks (charts, notes, tables) → one HTML file,
rendered from `templates/report.html.j2` with autoescape on and its CSS and JavaScript
inlined, so the file opens with no network."""

from __future__ import annotations

import functools
import json
import os
from datetime import date
from importlib import resources
from pathlib import Path

import jinja2
import polars as pl

from servio.config import Settings
from servio.lake import Lake
from servio.report import charts, lists, summaries, words
from servio.report.blocks import Block, Cell, Kpi, Link, Note, Row, Section, Specs, Table, TableCard
from servio.report.data import ReportData, read_report_data
from servio.report.value_sections import value_sections

LEDGER_HEADERS = {
    "rows_read": "rows read",
    "rows_valid": "valid",
    "rows_quarantined": "quarantined",
}


# ---------------------------------------------------------------------------------------
# the page


def default_report_path(lake: Lake) -> Path:
    """Where `servio run` and `servio report` put the report: beside the tables, not among them."""
    return lake.report_path


def write_report(lake: Lake, settings: Settings, out_path: Path, as_of: date | None = None) -> Path:
    """Write the HTML report for the snapshot `as_of` (default: the latest one); return its path.
    Every table is read at the latest publication's versions: one consistent lake, even
    while a run publishes (docs/BI.md, "One consistent view of several tables")."""
    out_path = Path(out_path)
    data = read_report_data(lake, settings, as_of)
    page = render_page(data, settings, out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_path.with_name(out_path.name + ".tmp")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, out_path)
    return out_path


def render_page(data: ReportData, settings: Settings, out_path: Path) -> str:
    """The page's HTML for `data`; `out_path` is where it will be written (for relative links)."""
    snapshot = data.snapshot
    profitability, quality, segments = snapshot.profitability, snapshot.quality, snapshot.segments
    money: words.Money = functools.partial(words.format_money, currency=settings.currency)
    catalog = settings.catalog
    head = summaries.headline(profitability, segments)
    gaps = summaries.gap_by_dimension(
        quality, catalog.dimensions, [catalog.side_of(d) for d in catalog.dimensions]
    )
    matrix = summaries.action_matrix(profitability, segments)
    specs = Specs()
    sections = [
        Section("profit", "Who is most profitable", _profit_blocks(specs, data, settings, head)),
        Section("service", "Where service falls short", _service_blocks(specs, data, gaps)),
        Section(
            "actions",
            "What to do",
            [
                specs.add(
                    "action-matrix",
                    "Action matrix: service level × profit segment",
                    words.action_lede(matrix, money),
                    charts.action_matrix_chart(matrix, settings.currency),
                    wide=True,
                )
            ],
        ),
        Section(
            "customers",
            "Which customers",
            lists.customer_blocks(data.customers, settings.currency),
            lede=lists.SECTION_LEDE,
        ),
        *value_sections(specs, data, settings.currency),
        Section("trends", "Trends", [_trends_block(specs, data, settings)]),
        Section("data-quality", "Data quality", _quality_blocks(specs, data, out_path)),
    ]
    return _template().render(
        as_of=snapshot.as_of.isoformat(),
        window_days=settings.window_days,
        currency=settings.currency,
        band=f"{settings.service_level_band:g}",
        kpis=_kpis(head, settings, money),
        findings=words.findings(head, gaps, matrix, profitability, money),
        sections=sections,
        # Marked safe in the template: our own CSS file, the checked bundle, JSON whose
        # "</" is escaped (`script_safe`).
        css=_css(),
        vega_bundle=charts.vega_bundle(),
        specs_json=script_safe(json.dumps(specs.specs, separators=(",", ":"), allow_nan=False)),
        embed_options_json=script_safe(json.dumps(charts.EMBED_OPTIONS)),
    )


def _profit_blocks(
    specs: Specs, data: ReportData, settings: Settings, head: summaries.Headline
) -> list[Block]:
    profitability = data.snapshot.profitability
    currency = settings.currency
    money = functools.partial(words.format_money, currency=currency)
    return [
        specs.add(
            "whale",
            "Whale curve",
            words.whale_lede(profitability, head),
            charts.whale_chart(profitability),
        ),
        specs.add(
            "profit-segment",
            "Profit by profit segment",
            "Core customers earn 80 % of the positive profit; unprofitable ones cost more to "
            "serve than their margin.",
            charts.profit_segment_chart(summaries.profit_by_segment(profitability), currency),
        ),
        specs.add(
            "kaplan",
            "Profit by Kaplan quadrant",
            words.kaplan_lede(profitability, money),
            charts.kaplan_chart(summaries.profit_by_quadrant(profitability), currency),
        ),
        specs.add(
            "rfm",
            "RFM segments",
            "Customers and their purchase revenue (monetary) per recency–frequency segment, "
            "most revenue first.",
            charts.rfm_chart(summaries.rfm_segments(profitability), currency),
        ),
    ]


def _service_blocks(specs: Specs, data: ReportData, gaps: pl.DataFrame) -> list[Block]:
    sides = summaries.gap_by_side(data.snapshot.quality, data.snapshot.segments)
    return [
        specs.add(
            "gap-dimension",
            "Service gap by dimension",
            words.gap_lede(gaps),
            charts.gap_dimension_chart(gaps),
        ),
        specs.add(
            "gap-side",
            "Technical vs functional gap",
            "WHAT customers get (technical) against HOW it reaches them (functional), per "
            "profit segment. Left of zero: perception fell short of expectation.",
            charts.gap_side_chart(sides),
        ),
    ]


def _trends_block(specs: Specs, data: ReportData, settings: Settings) -> Block:
    as_of = data.snapshot.as_of.isoformat()
    if data.trends.height >= 2:
        return specs.add(
            "trends",
            "Trends across snapshots",
            f"The {data.trends.height} snapshots up to {as_of}.",
            charts.trends_chart(data.trends, settings.currency),
            wide=True,
        )
    return Note(
        "Trends across snapshots",
        f"Only one snapshot up to {as_of}; trends appear once "
        "`servio run --as-of` or a backfill has published more than one as_of_date.",
    )


def _quality_blocks(specs: Specs, data: ReportData, out_path: Path) -> list[Block]:
    reasons = summaries.quarantine_reasons(data.quarantine)
    blocks: list[Block] = [_ledger_card(data, out_path)]
    if reasons.height:
        blocks.append(
            specs.add(
                "quarantine-reasons",
                "Quarantined rows by reason",
                f"The {min(charts.TOP_REASONS, reasons['reason_code'].n_unique())} most "
                "frequent rules broken; a row may break several.",
                charts.quarantine_chart(reasons),
            )
        )
    else:
        blocks.append(Note("Quarantined rows by reason", "No row was quarantined."))
    return blocks


def _ledger_card(data: ReportData, out_path: Path) -> TableCard:
    ledger = data.ledger
    by_source = summaries.ledger_by_source(ledger)
    total = by_source.row(by_source.height - 1, named=True)
    rows = [
        Row(
            [_number_cell(v) if c != "source" else Cell(str(v)) for c, v in r.items()],
            css_class="total" if r["source"] == "all" else "",
        )
        for r in by_source.iter_rows(named=True)
    ]
    read, quarantined = int(total["rows_read"] or 0), int(total["rows_quarantined"] or 0)
    share = f"{quarantined / read:.1%}" if read else "—"
    rejected = ledger.filter(pl.col("status") == "rejected").select("source_file", "reason")
    link, after = None, ["No Great Expectations Data Docs have been built yet."]
    if data.data_docs_index is not None:
        href = os.path.relpath(data.data_docs_index.resolve(), out_path.resolve().parent)
        link = Link(
            "Pass and fail per file and per rule, offline: ",
            Path(href).as_posix(),
            "Great Expectations Data Docs",
            ".",
        )
        after = []
    return TableCard(
        id="ledger",
        title="Ingested files and rows",
        ledes=[
            f"All {ledger.height} landed files so far: {quarantined:,} of {read:,} rows "
            f"({share}) quarantined; rows read = valid + quarantined for every file."
        ],
        table=Table([LEDGER_HEADERS.get(c, c) for c in by_source.columns], rows),
        items=[(f, r or "") for f, r in rejected.iter_rows()],
        items_title="Rejected files:" if rejected.height else "",
        link=link,
        after=after,
    )


def _number_cell(value: object) -> Cell:
    if isinstance(value, int):
        return Cell(f"{value:,}", str(value), "num")
    return Cell(str(value))


def _kpis(head: summaries.Headline, settings: Settings, money: words.Money) -> list[Kpi]:
    below_share = f"{head.below / head.rated:.0%} of rated" if head.rated else "none rated"
    return [
        Kpi("Customers", f"{head.customers:,}", f"active in the {settings.window_days}-day window"),
        Kpi(
            "Total profit",
            money(head.total_profit),
            "margin − cost to serve",
            bad=head.total_profit <= 0,
        ),
        Kpi(
            "Profit from the top 20 %",
            words.percent(head.top_share),
            "of total profit, by profit rank",
        ),
        Kpi(
            "Below expectations",
            f"{head.below:,}",
            f"customers ({below_share})",
            bad=head.below > 0,
        ),
    ]


def script_safe(json_text: str) -> str:
    """JSON that cannot close the <script> element it is embedded in ("<\\/" is "</" in JSON)."""
    return json_text.replace("</", "<\\/")


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("servio.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    return environment.get_template("report.html.j2")


@functools.cache
def _css() -> str:
    css = resources.files("servio.report").joinpath("templates", "report.css").read_text("utf-8")
    if "</style" in css.lower():  # would end the inline <style> element early
        raise RuntimeError("templates/report.css cannot be inlined: it has </style")
    return css
