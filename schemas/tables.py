"""The curated tables servio publishes (SPEC §4): the ingested sources with their lineage,
the quarantine, the ingest ledger, and servio's own control tables under `_servio/`; with
`curated_tables()`, every published table by name."""

from __future__ import annotations

import polars as pl

from .catalog import ItemCatalog
from .raw import SOURCE_ROW
from .snapshot_tables import (
    CUSTOMER_PROFITABILITY,
    CUSTOMER_SEGMENTS,
    DEFAULT_HORIZON_DAYS,
    customer_quality_table,
    value_tables,
)
from .table import MONEY, TIMESTAMP, Column, CuratedTable


def _lineage() -> tuple[Column, ...]:
    return (
        Column(
            "source_file", pl.String, "Raw file this version came from (relative to the raw root)."
        ),
        Column(SOURCE_ROW, pl.Int64, "Record number in that file (1 = first data record)."),
        Column("source_seq", pl.Int64, "Ingestion order of that file; breaks updated_at ties."),
    )


INTERACTIONS = CuratedTable(
    name="interactions",
    grain="One row per interaction_id: the latest version of each service contact.",
    key=("interaction_id",),
    partition_by="interaction_date",
    version_column="updated_at",
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
        version_column="submitted_at",
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

# The ledger's `status` of a file. Only verdicts about the bytes are remembered by content hash
# (ingested, duplicate, rejected — unless servio itself failed); a refused or deferred file,
# and one rejected for an internal error, stays eligible for the next run.
INGESTED, REJECTED, DUPLICATE = "ingested", "rejected", "duplicate"
REFUSED = "refused"  # where the file is: a folder naming no source, a link out of the root
DEFERRED = "deferred"  # an I/O failure: permission denied, vanished, changed while read
INTERNAL_ERROR = "internal_error"  # the reason code of a rejection for servio's own failure

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


def curated_tables(
    catalog: ItemCatalog, horizon_days: int = DEFAULT_HORIZON_DAYS
) -> dict[str, CuratedTable]:
    """Every published table, by name. `horizon_days` (the setting `value_horizon_days`)
    names customer_value's `expected_purchases_<h>d` column."""
    tables = (
        INTERACTIONS,
        survey_responses_table(catalog),
        customer_quality_table(catalog),
        CUSTOMER_PROFITABILITY,
        CUSTOMER_SEGMENTS,
        *value_tables(horizon_days).values(),
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
