"""Defects: one rule broken per bad row, each with the reason servio must quarantine it for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from servio.schemas.catalog import ItemCatalog
from servio.schemas.raw import MAX_ID_LENGTH

# Defects: one rule broken per bad row, each with the reason servio must quarantine it for


Value = str | int | float | datetime | pl.Expr | None


@dataclass(frozen=True)
class Defect:
    """A deliberate defect: which values of a row it overwrites, and the rule that row breaks."""

    name: str
    reason: str  # the quarantine reason code servio's rules give it (`rule:column`)
    detail: str
    values: dict[str, Value]
    typed: bool = True  # representable in typed Parquet columns
    needs: str | None = None  # a column the file must carry


def _too_long(column: str) -> pl.Expr:
    return pl.col(column) + "-" + "x" * MAX_ID_LENGTH


INTERACTION_DEFECTS = (
    Defect(
        "handle_not_a_number",
        "type:handle_seconds",
        "'abc' is not a number",
        {"handle_seconds": "abc"},
        typed=False,
    ),
    Defect(
        "queue_not_a_number",
        "type:queue_seconds",
        "'1.2.3' is not a number",
        {"queue_seconds": "1.2.3"},
        typed=False,
    ),
    Defect(
        "revenue_not_a_number",
        "type:revenue",
        "'ten' is not a decimal",
        {"revenue": "ten"},
        typed=False,
    ),
    Defect("handle_negative", "range:handle_seconds", "-30 < 0", {"handle_seconds": -30}),
    Defect("handle_too_long", "range:handle_seconds", "90000 > 86400", {"handle_seconds": 90_000}),
    Defect("queue_too_long", "range:queue_seconds", "700000 > 604800", {"queue_seconds": 700_000}),
    Defect("revenue_too_large", "range:revenue", "|2e9| > 1e9", {"revenue": 2_000_000_000.0}),
    Defect("unknown_channel", "allowed:channel", "'fax' is not a channel", {"channel": "fax"}),
    Defect("missing_interaction_id", "required:interaction_id", "null", {"interaction_id": None}),
    Defect("missing_customer_id", "required:customer_id", "null", {"customer_id": None}),
    Defect("missing_channel", "required:channel", "null", {"channel": None}),
    Defect("missing_started_at", "required:started_at", "null", {"started_at": None}),
    Defect("missing_handle_seconds", "required:handle_seconds", "null", {"handle_seconds": None}),
    Defect("missing_resolved", "required:resolved", "null", {"resolved": None}),
    Defect(
        "foreign_currency",
        "currency:currency",
        "'USD' is not the reporting currency EUR",
        {"currency": "USD"},
        needs="currency",
    ),
    Defect(
        "impossible_date",
        "type:started_at",
        "2026-02-30 does not exist",
        {"started_at": "2026-02-30T10:15:00Z"},
        typed=False,
    ),
    Defect(
        "started_before_2000",
        "too_old:started_at",
        "before 2000-01-01",
        {"started_at": datetime(1999, 12, 31, 23, 0, tzinfo=UTC)},
    ),
    Defect(
        "started_in_future",
        "future:started_at",
        "after ingestion time + 1 day",
        {"started_at": datetime(2099, 1, 1, 9, 0, tzinfo=UTC)},
    ),
    Defect(
        "bad_boolean",
        "type:resolved",
        "'maybe' is not a boolean",
        {"resolved": "maybe"},
        typed=False,
    ),
    Defect(
        "interaction_id_too_long",
        "length:interaction_id",
        "over 64 characters",
        {"interaction_id": _too_long("interaction_id")},
    ),
    Defect(
        "customer_id_too_long",
        "length:customer_id",
        "over 64 characters",
        {"customer_id": _too_long("customer_id")},
    ),
)


def _survey_defects(catalog: ItemCatalog) -> tuple[Defect, ...]:
    technical = catalog.items_on_side("technical") or catalog.items
    functional = catalog.items_on_side("functional") or catalog.items
    perc_t, perc_f = technical[0].perception_column, functional[-1].perception_column
    exp_f = functional[0].expectation_column
    silent: dict[str, Value] = {c: None for c in catalog.answer_columns}
    silent.update(nps=None, csat=None, ces=None)
    return (
        Defect("perception_above_scale", f"range:{perc_t}", "8 > 7", {perc_t: 8}),
        Defect("perception_below_scale", f"range:{perc_f}", "0 < 1", {perc_f: 0}),
        Defect("expectation_above_scale", f"range:{exp_f}", "8 > 7", {exp_f: 8}),
        Defect("nps_above_scale", "range:nps", "11 > 10", {"nps": 11}),
        Defect("csat_below_scale", "range:csat", "0 < 1", {"csat": 0}),
        Defect("ces_above_scale", "range:ces", "8 > 7", {"ces": 8}),
        Defect(
            "score_not_a_number",
            f"type:{perc_t}",
            "'abc' is not a whole number",
            {perc_t: "abc"},
            typed=False,
        ),
        Defect("no_answers", "no_answer", "no perception item, nps, csat or ces answered", silent),
        Defect("missing_response_id", "required:response_id", "null", {"response_id": None}),
        Defect("missing_customer_id", "required:customer_id", "null", {"customer_id": None}),
        Defect("missing_submitted_at", "required:submitted_at", "null", {"submitted_at": None}),
        Defect(
            "impossible_date",
            "type:submitted_at",
            "2026-02-30 does not exist",
            {"submitted_at": "2026-02-30T18:00:00Z"},
            typed=False,
        ),
        Defect(
            "submitted_before_2000",
            "too_old:submitted_at",
            "before 2000-01-01",
            {"submitted_at": datetime(1999, 6, 1, 12, 0, tzinfo=UTC)},
        ),
        Defect(
            "submitted_in_future",
            "future:submitted_at",
            "after ingestion time + 1 day",
            {"submitted_at": datetime(2099, 3, 1, 12, 0, tzinfo=UTC)},
        ),
        Defect(
            "response_id_too_long",
            "length:response_id",
            "over 64 characters",
            {"response_id": _too_long("response_id")},
        ),
    )


# ---------------------------------------------------------------------------------------------
