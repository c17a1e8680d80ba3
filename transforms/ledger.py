"""The ingest ledger's rules as frame logic: which outcomes are remembered by content hash,
and the reconciliation of each file's row counts (SPEC §3: every raw row ends curated,
superseded or quarantined)."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from ..schemas.tables import DUPLICATE, INGESTED, INTERNAL_ERROR, REJECTED

# Reconciliation rules, each in words and as the rows that break it.
READ_RULE = "rows_read = rows_valid + rows_quarantined"
KEPT_RULE = "rows_valid = rows_curated + rows_superseded"


def is_remembered(status: pl.Expr, reason: pl.Expr) -> pl.Expr:
    """Ledger rows whose verdict is about the content, so the same bytes (by SHA-256) are
    never looked at again: ingested, duplicate, and rejections other than servio's own
    failure. Refused (location) and deferred (I/O) files stay eligible for the next run."""
    return status.is_in([INGESTED, DUPLICATE]) | (
        (status == REJECTED) & ~reason.fill_null("").str.starts_with(INTERNAL_ERROR + ":")
    )


def remembers(status: str, reason: str | None) -> bool:
    """`is_remembered` for one outcome."""
    return bool(pl.select(is_remembered(pl.lit(status), pl.lit(reason, pl.String))).item())


def with_row_counts(
    ledger: pl.LazyFrame, superseded_now: Mapping[int, int], curated: Mapping[int, int]
) -> pl.LazyFrame:
    """Each file's (by `source_seq`) rows now curated, and its superseded rows plus those
    superseded by this publication."""
    return ledger.with_columns(
        pl.col("source_seq")
        .replace_strict(dict(curated), default=0, return_dtype=pl.Int64)
        .alias("rows_curated"),
        (
            pl.col("rows_superseded")
            + pl.col("source_seq").replace_strict(
                dict(superseded_now), default=0, return_dtype=pl.Int64
            )
        ).alias("rows_superseded"),
    )


def unreconciled(ledger: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """The files breaking each reconciliation rule (empty frames when nothing is lost or
    doubled)."""
    return {
        READ_RULE: ledger.filter(
            pl.col("rows_read") != pl.col("rows_valid") + pl.col("rows_quarantined")
        ),
        KEPT_RULE: ledger.filter(
            pl.col("rows_valid") != pl.col("rows_curated") + pl.col("rows_superseded")
        ),
    }
