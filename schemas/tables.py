"""Raw export contracts (SPEC §1.3, §1.4) and curated table schemas (SPEC §4), as data.

Readers, standardisation, validation, writers and the data dictionary all derive their
column lists from here; no other module spells a column list out again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl
import pyarrow as pa

from servio.schemas.catalog import SCALE_MAX, SCALE_MIN, ItemCatalog

SCHEMA_VERSION = 1
MONEY = pl.Decimal(18, 2)
TIMESTAMP = pl.Datetime("us", "UTC")
CHANNELS = ("phone", "chat", "email", "visit", "web")
TIMESTAMP_FLOOR = "2000-01-01T00:00:00Z"
MAX_ID_LENGTH = 64
MAX_ABS_MONEY = 10**9

# Columns a raw reader adds beside the contract columns (no contract column starts with "__",
# and unknown columns are dropped by the reader, so none of these can collide).
RAW_ROW_NUMBER = "source_row"  # 1-based record number in the file
RAW_MALFORMED = "__malformed__"  # set when the line is not a record: why
RAW_NOT_TEXT = "__not_text__"  # ';'-joined contract fields whose value was not text

RawKind = Literal[
    "id", "string", "timestamp", "number", "integer", "boolean", "decimal", "currency"
]


@dataclass(frozen=True)
class RawField:
    """One column of a raw export and the rule it must satisfy."""

    name: str
    kind: RawKind
    required: bool
    description: str
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[str, ...] | None = None
    max_length: int | None = None
    lower_case: bool = False  # stored trimmed and lower-cased


@dataclass(frozen=True)
class RawContract:
    """What a landed export of one source must look like."""

    source: str
    key: str
    version_column: str  # latest value wins among versions of one key
    fields: tuple[RawField, ...]
    # Accepted in raw files, never copied anywhere curated (not even to quarantine).
    personal_columns: tuple[str, ...] = ("customer_name", "email", "phone", "notes", "comment")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    def field(self, name: str) -> RawField:
        return next(f for f in self.fields if f.name == name)


INTERACTIONS_RAW = RawContract(
    source="interactions",
    key="interaction_id",
    version_column="updated_at",
    fields=(
        RawField(
            "interaction_id", "id", True, "Key of the service contact.", max_length=MAX_ID_LENGTH
        ),
        RawField("customer_id", "id", True, "The customer served.", max_length=MAX_ID_LENGTH),
        RawField("channel", "string", True, "Contact channel.", allowed=CHANNELS, lower_case=True),
        RawField("started_at", "timestamp", True, "When the contact started."),
        RawField("handle_seconds", "number", True, "Talk + hold + after-contact work.", 0, 86_400),
        RawField("queue_seconds", "number", False, "Wait before a person answered.", 0, 604_800),
        RawField("resolved", "boolean", True, "Was the issue solved in this contact."),
        RawField("reason", "string", False, "Contact reason, lower case.", lower_case=True),
        RawField(
            "revenue",
            "decimal",
            False,
            "Sale closed in this contact (negative = refund).",
            -MAX_ABS_MONEY,
            MAX_ABS_MONEY,
        ),
        RawField(
            "margin", "decimal", False, "Gross margin of that sale.", -MAX_ABS_MONEY, MAX_ABS_MONEY
        ),
        RawField("currency", "currency", False, "ISO 4217; must be the reporting currency."),
        RawField("agent_id", "string", False, "Agent who handled the contact."),
        RawField("updated_at", "timestamp", False, "Version time; defaults to started_at."),
    ),
)


def surveys_raw(catalog: ItemCatalog) -> RawContract:
    """The survey export contract; its item columns come from the item catalog."""
    answers = tuple(
        RawField(column, "integer", False, "Item answer on the 1–7 scale.", SCALE_MIN, SCALE_MAX)
        for column in catalog.answer_columns
    )
    return RawContract(
        source="surveys",
        key="response_id",
        version_column="submitted_at",
        fields=(
            RawField(
                "response_id", "id", True, "Key of the survey response.", max_length=MAX_ID_LENGTH
            ),
            RawField(
                "customer_id", "id", True, "The customer who answered.", max_length=MAX_ID_LENGTH
            ),
            RawField(
                "interaction_id",
                "string",
                False,
                "The contact the survey was about.",
                max_length=MAX_ID_LENGTH,
            ),
            RawField("submitted_at", "timestamp", True, "When the response was submitted."),
            *answers,
            RawField("nps", "integer", False, "Likelihood to recommend, 0–10.", 0, 10),
            RawField("csat", "integer", False, "Satisfaction, 1–5.", 1, 5),
            RawField("ces", "integer", False, "Customer effort, 1–7 (lower is better).", 1, 7),
        ),
    )


# ---------------------------------------------------------------------------------------
# Curated tables


DType = pl.DataType | type[pl.DataType]


@dataclass(frozen=True)
class Column:
    name: str
    dtype: DType
    description: str


@dataclass(frozen=True)
class CuratedTable:
    """A published table: its grain in one sentence, its key and how it is partitioned."""

    name: str
    grain: str
    key: tuple[str, ...]
    partition_by: str | None
    columns: tuple[Column, ...]
    schema_version: int = SCHEMA_VERSION
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def schema(self) -> pl.Schema:
        """Every column, the partition key included."""
        return pl.Schema({c.name: c.dtype for c in self.columns})

    @property
    def file_schema(self) -> pl.Schema:
        """The columns stored inside the Parquet files: the partition key lives in the path."""
        return pl.Schema({c.name: c.dtype for c in self.columns if c.name != self.partition_by})

    @property
    def arrow_file_schema(self) -> pa.Schema:
        return pa.schema([(name, arrow_type(dtype)) for name, dtype in self.file_schema.items()])


def arrow_type(dtype: DType) -> pa.DataType:
    """The Arrow type every BI reader understands for a curated column (no views, no large types)."""
    if isinstance(dtype, pl.Decimal):
        return pa.decimal128(dtype.precision or 38, dtype.scale)
    if isinstance(dtype, pl.Datetime):
        return pa.timestamp(dtype.time_unit or "us", tz=dtype.time_zone)
    if isinstance(dtype, type):
        dtype = dtype()
    simple: dict[type[pl.DataType], pa.DataType] = {
        pl.String: pa.string(),
        pl.Int64: pa.int64(),
        pl.Int32: pa.int32(),
        pl.Float64: pa.float64(),
        pl.Boolean: pa.bool_(),
        pl.Date: pa.date32(),
    }
    return simple[type(dtype)]


def _lineage() -> tuple[Column, ...]:
    return (
        Column(
            "source_file", pl.String, "Raw file this version came from (relative to the raw root)."
        ),
        Column("source_row", pl.Int64, "Record number in that file (1 = first data record)."),
        Column("source_seq", pl.Int64, "Ingestion order of that file; breaks updated_at ties."),
    )


INTERACTIONS = CuratedTable(
    name="interactions",
    grain="One row per interaction_id: the latest version of each service contact.",
    key=("interaction_id",),
    partition_by="interaction_date",
    columns=(
        Column("interaction_id", pl.String, "Key of the service contact."),
        Column("customer_id", pl.String, "The customer served."),
        Column("channel", pl.String, "phone, chat, email, visit or web."),
        Column("started_at", TIMESTAMP, "Start of the contact, UTC."),
        Column("interaction_date", pl.Date, "UTC date of started_at (partition key)."),
        Column("handle_seconds", pl.Float64, "Talk + hold + after-contact work, seconds."),
        Column(
            "queue_seconds", pl.Float64, "Wait before a person answered, seconds (null = unknown)."
        ),
        Column("is_resolved", pl.Boolean, "The customer's issue was solved in this contact."),
        Column("reason", pl.String, "Contact reason, lower case (null = unknown)."),
        Column("revenue", MONEY, "Sale closed in this contact; negative = refund; 0 when none."),
        Column(
            "margin", MONEY, "Gross margin of the sale, as exported or revenue × gross_margin_rate."
        ),
        Column(
            "cost_to_serve",
            MONEY,
            "per_contact + per_minute × handle_seconds / 60 for its channel.",
        ),
        Column("currency", pl.String, "Reporting currency of revenue, margin and cost."),
        Column("agent_id", pl.String, "Agent who handled the contact."),
        Column("updated_at", TIMESTAMP, "Version time, UTC (started_at when the export has none)."),
        *_lineage(),
    ),
)


def survey_responses_table(catalog: ItemCatalog) -> CuratedTable:
    per_dimension: list[Column] = []
    for dim in catalog.dimensions:
        per_dimension += [
            Column(
                f"{dim}_expectation", pl.Float64, f"Mean expectation over answered {dim} items."
            ),
            Column(f"{dim}_perception", pl.Float64, f"Mean perception over answered {dim} items."),
            Column(f"{dim}_gap", pl.Float64, f"Mean item gap (perception − expectation) in {dim}."),
        ]
    answers = tuple(
        Column(name, pl.Int32, "Item answer, 1–7 (null = not answered).")
        for name in catalog.answer_columns
    )
    return CuratedTable(
        name="survey_responses",
        grain="One row per response_id: the latest version of each survey response.",
        key=("response_id",),
        partition_by="submitted_date",
        columns=(
            Column("response_id", pl.String, "Key of the survey response."),
            Column("customer_id", pl.String, "The customer who answered."),
            Column("interaction_id", pl.String, "The contact the survey was about (may be null)."),
            Column("submitted_at", TIMESTAMP, "When the response was submitted, UTC."),
            Column("submitted_date", pl.Date, "UTC date of submitted_at (partition key)."),
            *answers,
            Column("nps", pl.Int32, "Likelihood to recommend, 0–10."),
            Column("csat", pl.Int32, "Satisfaction, 1–5."),
            Column("ces", pl.Int32, "Customer effort, 1–7 (lower is better)."),
            *per_dimension,
            Column("technical_gap", pl.Float64, "Mean item gap over technical items (WHAT)."),
            Column("functional_gap", pl.Float64, "Mean item gap over functional items (HOW)."),
            Column(
                "service_gap",
                pl.Float64,
                "Weighted mean of dimension gaps over answered dimensions.",
            ),
            Column("nps_group", pl.String, "promoter (9–10), passive (7–8), detractor (0–6)."),
            *_lineage(),
        ),
    )


def customer_quality_table(catalog: ItemCatalog) -> CuratedTable:
    gaps = tuple(
        Column(f"{dim}_gap", pl.Float64, f"Mean over the window's responses of the {dim} gap.")
        for dim in catalog.dimensions
    )
    return CuratedTable(
        name="customer_quality",
        grain="One row per as_of_date × customer_id with activity in the window.",
        key=("as_of_date", "customer_id"),
        partition_by="as_of_date",
        columns=(
            Column("as_of_date", pl.Date, "Snapshot date D; the window is (D − window_days, D]."),
            Column("customer_id", pl.String, "The customer."),
            Column(
                "n_responses", pl.Int64, "Survey responses submitted in the window (0 if none)."
            ),
            *gaps,
            Column(
                "technical_gap",
                pl.Float64,
                "Mean over responses of the item gap on technical items (WHAT the customer got).",
            ),
            Column(
                "functional_gap",
                pl.Float64,
                "Mean over responses of the item gap on functional items (HOW it reached them).",
            ),
            Column(
                "service_gap",
                pl.Float64,
                "Mean over responses of the weighted dimension gap (weights renormalised over answered dimensions).",
            ),
            Column(
                "service_level",
                pl.String,
                "exceeded if service_gap > band, below if < −band, met otherwise (±band is met), unknown without a gap.",
            ),
            Column(
                "nps_last",
                pl.Int32,
                "NPS of the latest response that has one (latest by submitted_at, then response_id).",
            ),
            Column("nps_last_group", pl.String, "promoter / passive / detractor of nps_last."),
            Column("csat_mean", pl.Float64, "Mean CSAT, 1–5."),
            Column("ces_mean", pl.Float64, "Mean customer effort, 1–7."),
            Column("n_interactions", pl.Int64, "Contacts started in the window (0 if none)."),
            Column(
                "fcr_rate",
                pl.Float64,
                "Share of contacts resolved with no same-reason contact in the next 7 days (null reason never matches).",
            ),
            Column(
                "repeat_contact_rate_7d",
                pl.Float64,
                "Share of contacts followed by any contact of the customer in the next 7 days.",
            ),
            Column("avg_queue_seconds", pl.Float64, "Mean queue time, seconds."),
            Column("avg_handle_seconds", pl.Float64, "Mean handle time, seconds."),
        ),
    )


CUSTOMER_PROFITABILITY = CuratedTable(
    name="customer_profitability",
    grain="One row per as_of_date × customer_id with activity in the window.",
    key=("as_of_date", "customer_id"),
    partition_by="as_of_date",
    columns=(
        Column("as_of_date", pl.Date, "Snapshot date D; the window is (D − window_days, D]."),
        Column("customer_id", pl.String, "The customer."),
        Column(
            "revenue",
            MONEY,
            "Sum of the window's interaction revenue, refunds included; 0.00 for survey-only customers.",
        ),
        Column("margin", MONEY, "Sum of the per-interaction margins, refunds included."),
        Column(
            "cost_to_serve",
            MONEY,
            "Sum of per-contact costs: per_contact + per_minute × handle_seconds / 60, each rounded half-even.",
        ),
        Column("profit", MONEY, "margin − cost_to_serve, exact to the cent."),
        Column("profit_rank", pl.Int64, "1 = most profitable; ties by customer_id."),
        Column(
            "cumulative_profit_share",
            pl.Float64,
            "Running profit in rank order ÷ total profit (the whale curve); null when the total ≤ 0.",
        ),
        Column(
            "profit_segment",
            pl.String,
            "core = fewest top-ranked customers reaching ≥ 80 % of positive profit; profitable = other profit > 0; unprofitable = profit ≤ 0.",
        ),
        Column(
            "kaplan_quadrant",
            pl.String,
            "Revenue > 0 only: cost ÷ revenue vs margin ÷ revenue split at the medians (ties low): passive / carriage_trade / bargain_basement / aggressive.",
        ),
        Column(
            "recency_days",
            pl.Int64,
            "Days from the last purchase (revenue > 0) to D; null without a purchase.",
        ),
        Column("frequency", pl.Int64, "Distinct days with a purchase in the window."),
        Column("monetary", MONEY, "Sum of the purchases' revenue; null without a purchase."),
        Column(
            "r_score",
            pl.Int32,
            "ceil(5 × rank ÷ n) ranking purchasers by recency, 5 = most recent.",
        ),
        Column(
            "f_score",
            pl.Int32,
            "ceil(5 × rank ÷ n) ranking purchasers by frequency, 5 = most frequent.",
        ),
        Column(
            "m_score", pl.Int32, "ceil(5 × rank ÷ n) ranking purchasers by monetary, 5 = highest."
        ),
        Column(
            "rfm_segment", pl.String, "RFM segment from R and F; no_purchase without a purchase."
        ),
    ),
)

CUSTOMER_SEGMENTS = CuratedTable(
    name="customer_segments",
    grain="One row per as_of_date × customer_id with activity in the window.",
    key=("as_of_date", "customer_id"),
    partition_by="as_of_date",
    columns=(
        Column("as_of_date", pl.Date, "Snapshot date D."),
        Column("customer_id", pl.String, "The customer."),
        Column("profit_segment", pl.String, "From customer_profitability."),
        Column(
            "service_level",
            pl.String,
            "From customer_quality; unknown when the customer has no gap.",
        ),
        Column("rfm_segment", pl.String, "From customer_profitability."),
        Column(
            "action",
            pl.String,
            "What to do: retain_now / grow / ask_feedback (core, profitable) or reduce_cost_to_serve / review_terms (unprofitable).",
        ),
    ),
)


def expected_purchases_column(horizon_days: int) -> str:
    """`expected_purchases_<h>d`: the column's name carries the horizon it was scored for."""
    return f"expected_purchases_{horizon_days}d"


def customer_value_table(horizon_days: int) -> CuratedTable:
    """SPEC §6 `customer_value`; `horizon_days` is the setting `value_horizon_days`."""
    value_note = "null without a purchase or when the fit did not converge"
    return CuratedTable(
        name="customer_value",
        grain="One row per as_of_date × customer_id with activity in the window.",
        key=("as_of_date", "customer_id"),
        partition_by="as_of_date",
        columns=(
            Column("as_of_date", pl.Date, "Snapshot date D; the window is (D − window_days, D]."),
            Column("customer_id", pl.String, "The customer."),
            Column(
                "x",
                pl.Int64,
                "Repeat purchases: distinct purchase days (revenue > 0) in the window − 1; null without a purchase.",
            ),
            Column("t_x", pl.Int64, "Days from the first to the last purchase day."),
            Column("T", pl.Int64, "Days from the first purchase day to D."),
            Column(
                "avg_repeat_spend",
                pl.Float64,
                "Mean purchase revenue per repeat purchase day (first purchase day excluded), unrounded; null when x = 0.",
            ),
            Column(
                "p_alive",
                pl.Float64,
                f"BG/NBD probability that the customer is still active at D; {value_note}.",
            ),
            Column(
                expected_purchases_column(horizon_days),
                pl.Float64,
                f"BG/NBD expected purchase days in (D, D + {horizon_days}]; {value_note}.",
            ),
            Column(
                "expected_spend",
                pl.Float64,
                f"Gamma-Gamma expected revenue per purchase day (x = 0: the population mean), unrounded; {value_note}.",
            ),
            Column(
                "clv",
                MONEY,
                "expected purchases × expected spend × gross_margin_rate ÷ (1 + annual_discount_rate)^(h ÷ 730), half-even cents.",
            ),
            Column(
                "value_at_risk",
                MONEY,
                "margin in the snapshot (as in customer_profitability) × (1 − p_alive), half-even cents.",
            ),
        ),
    )


VALUE_MODEL = CuratedTable(
    name="value_model",
    grain="One row per as_of_date × model: the snapshot's fitted customer-value models.",
    key=("as_of_date", "model"),
    partition_by="as_of_date",
    columns=(
        Column("as_of_date", pl.Date, "Snapshot date D."),
        Column("model", pl.String, "bg_nbd (purchase and dropout) or gamma_gamma (spend)."),
        Column("r", pl.Float64, "BG/NBD: shape of the purchase-rate gamma (time unit: days)."),
        Column("alpha", pl.Float64, "BG/NBD: scale of the purchase-rate gamma, days."),
        Column("a", pl.Float64, "BG/NBD: dropout-probability beta, a."),
        Column("b", pl.Float64, "BG/NBD: dropout-probability beta, b."),
        Column("p", pl.Float64, "Gamma-Gamma: shape of the per-purchase spend gamma."),
        Column("q", pl.Float64, "Gamma-Gamma: shape of the customers' spend-scale gamma."),
        Column("gamma", pl.Float64, "Gamma-Gamma: scale of the customers' spend-scale gamma."),
        Column(
            "n_customers",
            pl.Int64,
            "Customers fitted (BG/NBD: with a purchase; Gamma-Gamma: x > 0).",
        ),
        Column(
            "log_likelihood", pl.Float64, "Log-likelihood at the estimates; null if not fitted."
        ),
        Column(
            "converged",
            pl.Boolean,
            "The optimiser converged to an interior maximum; if false, no customer is scored with it.",
        ),
    ),
)

QUALITY_DRIVERS = CuratedTable(
    name="quality_drivers",
    grain="One row per as_of_date × dimension: an importance–performance analysis of NPS.",
    key=("as_of_date", "dimension"),
    partition_by="as_of_date",
    columns=(
        Column("as_of_date", pl.Date, "Snapshot date D."),
        Column("dimension", pl.String, "Quality dimension of the item catalog."),
        Column(
            "importance",
            pl.Float64,
            "Johnson's relative weight of the dimension's perception in explaining NPS (the dimensions' weights sum to R²); null under 30 responses.",
        ),
        Column("performance", pl.Float64, "Mean perception over the qualifying responses."),
        Column("mean_gap", pl.Float64, "Mean dimension gap over the qualifying responses."),
        Column(
            "n_responses",
            pl.Int64,
            "Window responses with an NPS score and every dimension's perception.",
        ),
        Column(
            "quadrant",
            pl.String,
            "Split at the means of importance and performance (equal = low): fix_first, keep_up, possible_overkill, low_priority; null under 30 responses.",
        ),
    ),
)

SERVICE_LEVELS = CuratedTable(
    name="service_levels",
    grain="One row per as_of_date × channel with a queue target, plus channel = 'all'.",
    key=("as_of_date", "channel"),
    partition_by="as_of_date",
    columns=(
        Column("as_of_date", pl.Date, "Snapshot date D."),
        Column("channel", pl.String, "A channel with an [sla] queue target, or all."),
        Column("n_interactions", pl.Int64, "Contacts started in the window."),
        Column(
            "sla_breach_rate",
            pl.Float64,
            "Share of contacts with a known queue time above the target (all: over channels with a target).",
        ),
        Column("p50_queue_seconds", pl.Float64, "Median queue time (linear interpolation)."),
        Column(
            "p90_queue_seconds", pl.Float64, "90th percentile of queue time (linear interpolation)."
        ),
        Column("fcr_rate", pl.Float64, "First-contact resolution, as in customer_quality."),
        Column(
            "nps",
            pl.Float64,
            "Snapshot-wide: % promoters − % detractors over the window's responses with a score.",
        ),
        Column("csat_mean", pl.Float64, "Snapshot-wide mean CSAT of the window's responses."),
        Column(
            "ces_mean", pl.Float64, "Snapshot-wide mean customer effort of the window's responses."
        ),
    ),
)


def value_tables(horizon_days: int) -> dict[str, CuratedTable]:
    """The SPEC §6 snapshot tables, by name (not yet in `curated_tables`: not published yet)."""
    tables = (customer_value_table(horizon_days), VALUE_MODEL, QUALITY_DRIVERS, SERVICE_LEVELS)
    return {t.name: t for t in tables}


QUARANTINE = CuratedTable(
    name="quarantine",
    grain="One row per rejected raw row, or per rejected file (row_number null).",
    key=("source_file", "row_number"),
    partition_by="source",
    columns=(
        Column("source", pl.String, "interactions, surveys, or unknown (partition key)."),
        Column("source_file", pl.String, "Raw file, relative to the raw root."),
        Column("sha256", pl.String, "Content hash of that file."),
        Column(
            "row_number",
            pl.Int64,
            "Record number in the file (1 = first data record); null = whole file.",
        ),
        Column("reason_codes", pl.String, "Every rule the row broke, ';'-separated codes."),
        Column("reason_detail", pl.String, "The rules in words: column, rule, value."),
        Column(
            "raw_record",
            pl.String,
            "Original contract-column values as JSON text (personal columns dropped).",
        ),
        Column("run_id", pl.String, "Run that quarantined it."),
        Column("quarantined_at", TIMESTAMP, "When, UTC."),
    ),
)

INGEST_LEDGER = CuratedTable(
    name="ingest_ledger",
    grain="One row per landed file servio has looked at.",
    key=("source_seq",),
    partition_by=None,
    columns=(
        Column("source_seq", pl.Int64, "Ingestion order of the file."),
        Column("source_file", pl.String, "Path relative to the raw root."),
        Column("source", pl.String, "interactions, surveys, or unknown."),
        Column("file_format", pl.String, "csv, csv.gz, jsonl, jsonl.gz, ndjson or parquet."),
        Column("size_bytes", pl.Int64, "File size."),
        Column(
            "sha256",
            pl.String,
            "Content hash; equal content is ingested once. Null when the bytes were not read.",
        ),
        Column(
            "status",
            pl.String,
            "ingested, rejected, duplicate (same content as duplicate_of), refused (where the "
            "file is: not read, retried) or deferred (I/O failure: retried by the next run).",
        ),
        Column("reason", pl.String, "<code>: <detail> — why a file was not ingested."),
        Column("duplicate_of", pl.String, "The file with the same content that was ingested."),
        Column("rows_read", pl.Int64, "Data records read."),
        Column("rows_valid", pl.Int64, "Records that passed every rule."),
        Column("rows_quarantined", pl.Int64, "Records sent to quarantine."),
        Column(
            "rows_curated",
            pl.Int64,
            "Valid records that are the current version in a curated table.",
        ),
        Column("rows_superseded", pl.Int64, "Valid records replaced by a newer version."),
        Column("run_id", pl.String, "Run that ingested the file."),
        Column("ingested_at", TIMESTAMP, "When, UTC."),
    ),
)


def curated_tables(catalog: ItemCatalog) -> dict[str, CuratedTable]:
    """Every published table, by name."""
    tables = (
        INTERACTIONS,
        survey_responses_table(catalog),
        customer_quality_table(catalog),
        CUSTOMER_PROFITABILITY,
        CUSTOMER_SEGMENTS,
        QUARANTINE,
        INGEST_LEDGER,
    )
    return {t.name: t for t in tables}


# servio's own Delta tables under `<curated_root>/_servio/`: what the lake remembers between
# runs, and which table versions each publication left (readers pin these for one consistent
# view of several tables).
LAKE_STATE = CuratedTable(
    name="state",
    grain="One row per remembered fact (e.g. snapshot_fingerprints).",
    key=("key",),
    partition_by=None,
    columns=(
        Column("key", pl.String, "What is remembered."),
        Column("value", pl.String, "Its value, as JSON."),
    ),
)

PUBLICATIONS = CuratedTable(
    name="publications",
    grain="One row per publication and table: the table's Delta version once it was done.",
    key=("publication", "table_name"),
    partition_by=None,
    columns=(
        Column("publication", pl.Int64, "Publication number, 1, 2, … (the Delta txn version)."),
        Column("run_id", pl.String, "Run that published."),
        Column("published_at", TIMESTAMP, "When the publication completed, UTC."),
        Column("table_name", pl.String, "A table of the lake."),
        Column("table_version", pl.Int64, "Its Delta version in this publication."),
        Column("changed", pl.Boolean, "Whether this publication committed to the table."),
    ),
)
