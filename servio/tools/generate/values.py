"""Ids, times and date spans as the generated exports spell them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import polars as pl

from servio.tools.generate.options import Bool, Int


def _ids(prefix: str, numbers: Any, width: int) -> pl.Series:
    """prefix + zero-padded number, e.g. I000000042."""
    digits = (
        (pl.Series(np.asarray(numbers, dtype=np.int64)) + 10**width).cast(pl.String).str.slice(1)
    )
    return pl.select(pl.lit(prefix) + pl.lit(digits)).to_series()


def _where(keep: Bool, values: pl.Series) -> pl.Series:
    """values where keep, else null."""
    return (
        pl.select(pl.when(pl.lit(pl.Series(keep))).then(pl.lit(values)))
        .to_series()
        .alias(values.name)
    )


def _utc(epoch_seconds: Int) -> pl.Series:
    return pl.Series(np.asarray(epoch_seconds, dtype=np.int64) * 1_000_000).cast(
        pl.Datetime("us", "UTC")
    )


def _day(epoch_seconds: int) -> date:
    return datetime.fromtimestamp(int(epoch_seconds), tz=UTC).date()


def _span(epoch_seconds: Int) -> str:
    """File-name date range of a chunk of rows sorted by time."""
    if len(epoch_seconds) == 0:
        return "empty"
    return f"{_day(int(epoch_seconds[0])):%Y%m%d}-{_day(int(epoch_seconds[-1])):%Y%m%d}"
