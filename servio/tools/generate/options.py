"""What to generate (`GenerateOptions`) and what was written (`GenerateReport`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

MANIFEST_NAME = "_generator_manifest.json"
FORMATS = ("csv", "csv.gz", "jsonl", "jsonl.gz", "ndjson", "parquet")
CSV_FORMATS = ("csv", "csv.gz")
TEXT_FORMATS = ("csv", "csv.gz", "jsonl", "jsonl.gz", "ndjson")
MAX_ROWS_PER_FILE = 1_000_000
WRITERS = 2
DAY = 86_400

Int = NDArray[np.int64]
Float = NDArray[np.float64]
Bool = NDArray[np.bool_]


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate; the same options always give the same bytes."""

    customers: int = 2_000
    days: int = 120
    seed: int = 42
    messiness: float = 0.03  # share of deliberately bad rows; 0 = perfectly clean
    end_date: date = date(2026, 11, 26)  # last day of activity (UTC)
    interactions_per_customer: float = 6.0  # mean
    survey_rate: float = 0.25  # share of contacts with a survey response
    reexport_rate: float = 0.05  # share of interactions re-exported later with later updated_at
    formats: tuple[str, ...] = ("csv", "csv.gz", "jsonl", "parquet")

    def check(self) -> None:
        """Raise ValueError naming the option and its expected form."""
        problems = []
        if self.customers < 1:
            problems.append(f"customers must be ≥ 1, got {self.customers}")
        if self.days < 1:
            problems.append(f"days must be ≥ 1, got {self.days}")
        if self.interactions_per_customer <= 0:
            problems.append(
                f"interactions_per_customer must be > 0, got {self.interactions_per_customer}"
            )
        for name, limit in (("messiness", 0.5), ("survey_rate", 1), ("reexport_rate", 1)):
            value = getattr(self, name)
            if not 0 <= value <= limit:
                problems.append(f"{name} must be between 0 and {limit}, got {value}")
        if not self.formats:
            problems.append("formats must name at least one format")
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            problems.append(f"unknown format {unknown[0]!r}; formats are {', '.join(FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            problems.append("formats must not repeat")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class GenerateReport:
    """What was written, for the CLI summary and for tests."""

    files: list[Path]
    interaction_rows: int
    survey_rows: int
    valid_interaction_ids: int  # distinct interaction_ids that servio must curate (ground truth)
    valid_response_ids: int
    bad_interaction_rows: int  # rows deliberately broken (must be quarantined)
    bad_survey_rows: int
    seconds: float
