"""Curated-table rows for the SPEC §6 transform tests: a contact or a response `days_ago`
days before AS_OF, every column of its table present."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import polars as pl

from servio.schemas.catalog import load_catalog
from servio.schemas.tables import INTERACTIONS, survey_responses_table

AS_OF = dt.date(2026, 11, 27)
WINDOW_DAYS = 365
CATALOG = load_catalog()
SURVEY_SCHEMA = survey_responses_table(CATALOG).schema


def contact(
    customer_id: str,
    *,
    days_ago: int = 0,
    hour: int = 12,
    revenue: str = "0.00",
    margin: str | None = None,
    channel: str = "phone",
    queue_seconds: float | None = 10.0,
    resolved: bool = True,
    reason: str | None = "billing",
    interaction_id: str | None = None,
) -> dict[str, Any]:
    day = AS_OF - dt.timedelta(days=days_ago)
    started_at = dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)
    return {
        "interaction_id": interaction_id,
        "customer_id": customer_id,
        "channel": channel,
        "started_at": started_at,
        "interaction_date": day,
        "handle_seconds": 60.0,
        "queue_seconds": queue_seconds,
        "is_resolved": resolved,
        "reason": reason,
        "revenue": Decimal(revenue),
        "margin": Decimal(margin if margin is not None else revenue) * Decimal("0.4"),
        "cost_to_serve": Decimal("1.00"),
        "currency": "EUR",
        "updated_at": started_at,
        "source_file": "interactions/test.csv",
        "source_seq": 1,
    }


def response(
    customer_id: str,
    *,
    days_ago: int = 0,
    nps: int | None = 9,
    csat: int | None = None,
    ces: int | None = None,
    **scores: float | None,
) -> dict[str, Any]:
    """`scores` are curated score columns, e.g. tangibles_perception=5.0."""
    day = AS_OF - dt.timedelta(days=days_ago)
    return {
        "customer_id": customer_id,
        "submitted_at": dt.datetime(day.year, day.month, day.day, 9, tzinfo=dt.UTC),
        "submitted_date": day,
        "nps": nps,
        "csat": csat,
        "ces": ces,
        **scores,
        "source_file": "surveys/test.csv",
        "source_seq": 2,
    }


def interactions(*contacts: dict[str, Any]) -> pl.LazyFrame:
    rows = [
        {**row, "interaction_id": row["interaction_id"] or f"i{n:05d}", "source_row": n}
        for n, row in enumerate(contacts, 1)
    ]
    return pl.LazyFrame(rows, schema=INTERACTIONS.schema)


def survey_responses(*responses: dict[str, Any]) -> pl.LazyFrame:
    rows = [
        {**row, "response_id": f"r{n:05d}", "source_row": n} for n, row in enumerate(responses, 1)
    ]
    return pl.LazyFrame(rows, schema=SURVEY_SCHEMA)
