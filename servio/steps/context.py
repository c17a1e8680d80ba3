"""What every step of a run works with, in one value: the settings, the lake, the run id, the
validator, the clock, and how fan-out work is run. Tests and harnesses swap a field (a
required-only validator, a fixed clock, tiny chunks) instead of patching a step."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from servio.config import Settings
from servio.lake import Lake
from servio.validation import Validator

T = TypeVar("T")
# Runs fn(*args) once per argument tuple, possibly in parallel, and returns the results in order.
Mapper = Callable[[Callable[..., T], Sequence[tuple[Any, ...]]], list[T]]
Clock = Callable[[], datetime]

# Rows staged at a time: bounds staging memory (a 1 M-row interactions chunk peaks near
# 1.5 GB with the GX suite); a file up to this size is staged in one piece. A wider contract
# gets fewer rows (`RunContext.chunk_rows_of`): at most STAGE_CHUNK_FIELDS fields (rows × the
# contract's fields), 1 M interactions (13 fields) or 254,901 surveys (51 fields). Counted in
# rows alone, the 100M benchmark's 740k-row survey files were one chunk each, and building
# their curated and quarantine rows took the ingest from 2.7 to 4.4 GB.
STAGE_CHUNK_ROWS = 1_000_000
STAGE_CHUNK_FIELDS = 13_000_000


def rows_within(budget_fields: int, fields: int) -> int:
    """Rows of a `fields`-field contract that fit a budget counted in fields (at least one):
    how staging chunks and validation batches bound memory for wide and narrow sources."""
    return max(1, budget_fields // max(1, fields))


def in_order(fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
    """The default mapper: one call after another in this process."""
    return [fn(*args) for args in calls]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_run_id(kind: str = "run", now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC start time, what kind of run, a random suffix."""
    started = (now or utc_now()).astimezone(UTC)
    return f"{started:%Y%m%dT%H%M%SZ}-{kind}-{uuid.uuid4().hex[:8]}"


def _gx_validator() -> Validator:
    from servio.validation.gx import GxValidator  # light: GX itself loads on first use

    return GxValidator()


def load_validator() -> None:
    """Load what the default validator needs (Great Expectations, its context) now rather
    than in a run's first check: a warm served process (flows/warm.py) pays it once."""
    from servio.validation.gx import load

    load()


@dataclass(frozen=True)
class RunContext:
    """One run of the sequence. Small and picklable: staging and snapshot tasks receive it on
    Dask workers (the lake is a root and pinned versions; the validator holds no state)."""

    settings: Settings
    lake: Lake
    run_id: str
    validator: Validator = field(default_factory=_gx_validator)
    clock: Clock = utc_now
    # The run's ingestion time: rules such as "not after ingestion + 1 day" use it.
    started_at: datetime = field(default_factory=utc_now)
    mapper: Mapper[Any] = in_order  # runs fan-out work (a snapshot's bucket tasks)
    chunk_rows: int = STAGE_CHUNK_ROWS

    @classmethod
    def start(
        cls,
        settings: Settings,
        kind: str = "run",
        *,
        validator: Validator | None = None,
        clock: Clock = utc_now,
        mapper: Mapper[Any] = in_order,
        chunk_rows: int = STAGE_CHUNK_ROWS,
        run_id: str | None = None,
    ) -> RunContext:
        """A new run over the settings' lake: a fresh run id, the clock's time as its
        ingestion time, the Great Expectations validator unless another is given."""
        started_at = clock()
        return cls(
            settings=settings,
            lake=Lake(settings.curated_root),
            run_id=run_id or new_run_id(kind, started_at),
            validator=validator if validator is not None else _gx_validator(),
            clock=clock,
            started_at=started_at,
            mapper=mapper,
            chunk_rows=chunk_rows,
        )

    def now(self) -> datetime:
        return self.clock()

    def chunk_rows_of(self, fields: int) -> int:
        """Rows staged at a time for a contract of `fields` fields: `chunk_rows`, and at most
        `STAGE_CHUNK_FIELDS` fields (at least one row)."""
        return max(1, min(self.chunk_rows, rows_within(STAGE_CHUNK_FIELDS, fields)))
