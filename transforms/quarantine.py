"""Rows that break a rule → `quarantine` rows (SPEC §3): which reasons a row gets, its original
text as JSON, and the one row of a file rejected whole. Failure frames follow
`servio.schemas.raw.FAILURE_SCHEMA`: one row per (source_row, broken rule)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from ..schemas.raw import FAILURE_SCHEMA, RAW_MALFORMED, SOURCE_ROW, RawContract
from ..schemas.tables import QUARANTINE

MALFORMED = "malformed_record"  # a line that is not a record (ragged CSV, broken JSON)
FILE_PREFIX = "file:"  # reason code of a file rejected whole: file:<code>


def malformed_rows(raw: pl.LazyFrame) -> pl.LazyFrame:
    """A failure for each line the reader could not read as a record (it says why)."""
    if RAW_MALFORMED not in raw.collect_schema().names():
        return pl.LazyFrame(schema=FAILURE_SCHEMA)
    return raw.filter(pl.col(RAW_MALFORMED).is_not_null()).select(
        SOURCE_ROW,
        pl.lit(MALFORMED).alias("reason_code"),
        pl.col(RAW_MALFORMED).alias("detail"),
    )


def row_failures(
    malformed: pl.LazyFrame, type_failures: pl.LazyFrame, rule_failures: pl.LazyFrame
) -> pl.LazyFrame:
    """Every reason of every failing row. A line that is not a record has no values: its only
    reason is that it is malformed. A value that failed to parse is null, so a `required:`
    failure of it would repeat its `type:` reason and is left out."""
    others = pl.concat([type_failures, rule_failures]).join(
        malformed.select(SOURCE_ROW), on=SOURCE_ROW, how="anti"
    )
    return without_redundant_required(pl.concat([malformed, others]))


def without_redundant_required(failures: pl.LazyFrame) -> pl.LazyFrame:
    """A value that failed to parse is null, so `required:` would repeat its `type:` reason."""
    typed_fields = failures.filter(pl.col("reason_code").str.starts_with("type:")).select(
        SOURCE_ROW, pl.col("reason_code").str.replace("^type:", "required:").alias("reason_code")
    )
    return failures.join(typed_fields, on=[SOURCE_ROW, "reason_code"], how="anti")


def valid_rows(typed: pl.LazyFrame, failures: pl.LazyFrame) -> pl.LazyFrame:
    """The standardised rows without any failure."""
    return typed.join(failures.select(SOURCE_ROW).unique(), on=SOURCE_ROW, how="anti")


def row_quarantine(
    raw: pl.LazyFrame,
    failures: pl.LazyFrame,
    contract: RawContract,
    *,
    source: str,
    source_file: str,
    sha256: str | None,
    run_id: str,
    quarantined_at: datetime,
) -> pl.LazyFrame:
    """One quarantine row per failing record: every reason code (';'-joined, in code order),
    the details, and the record's contract columns as JSON text (nothing else of it)."""
    contract_columns = [c for c in raw.collect_schema().names() if c in contract.names]
    reasons = (
        failures.sort(SOURCE_ROW, "reason_code")
        .group_by(SOURCE_ROW, maintain_order=True)
        .agg(
            pl.col("reason_code").unique(maintain_order=True).str.join(";").alias("reason_codes"),
            pl.col("detail").str.join("; ").alias("reason_detail"),
        )
    )
    record = pl.struct(contract_columns).struct.json_encode() if contract_columns else pl.lit("{}")
    rows = raw.join(reasons, on=SOURCE_ROW, how="inner").select(
        pl.lit(source).alias("source"),
        pl.lit(source_file).alias("source_file"),
        pl.lit(sha256).alias("sha256"),
        pl.col(SOURCE_ROW).alias("row_number"),
        "reason_codes",
        "reason_detail",
        record.alias("raw_record"),
        pl.lit(run_id).alias("run_id"),
        pl.lit(quarantined_at).alias("quarantined_at"),
    )
    return rows.select(pl.col(n).cast(t) for n, t in QUARANTINE.schema.items())


def file_quarantine(
    *,
    source: str,
    source_file: str,
    sha256: str | None,
    code: str,
    detail: str,
    run_id: str,
    quarantined_at: datetime,
) -> pl.LazyFrame:
    """The one quarantine row of a file rejected whole (no row number, no record)."""
    row = {
        "source": source,
        "source_file": source_file,
        "sha256": sha256,
        "row_number": None,
        "reason_codes": f"{FILE_PREFIX}{code}",
        "reason_detail": detail,
        "raw_record": None,
        "run_id": run_id,
        "quarantined_at": quarantined_at,
    }
    return pl.LazyFrame([row], schema=QUARANTINE.schema)
