"""The interactions export: contacts spelled as a CRM would, and the later re-export."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl
from numpy.typing import NDArray

from servio.schemas.channels import CHANNELS
from servio.schemas.raw import INTERACTIONS_RAW
from servio.tools.generate.business import (
    BOOLEAN_SPELLINGS,
    CHANNEL_PROFILES,
    FIRST_NAMES,
    NOTES,
    REASONS,
    TIMESTAMP_STYLE_SHARES,
    Contacts,
    Customers,
    _draw,
    _index,
    _lookup,
)
from servio.tools.generate.defects import INTERACTION_DEFECTS
from servio.tools.generate.files import ExportFile, _file_count, _file_dialects, _split
from servio.tools.generate.options import DAY, Bool, GenerateOptions, Int
from servio.tools.generate.plan import SourcePlan, _assign_defects, _with_duplicates
from servio.tools.generate.values import _ids, _span, _utc, _where

CHANNEL_TEXTS = [v for c in CHANNELS for v in (c, c.capitalize(), c.upper(), f" {c} ")]
REASON_TEXTS = [*(v for r in REASONS for v in (r, r.capitalize(), f" {r} ")), None, None, None]
_BASE_NOTES = [text for key in (*REASONS, "") for text in NOTES[key]]
NOTE_TEXTS = [
    *_BASE_NOTES,
    *(f"Spoke with {first}. {text}" for first in FIRST_NAMES for text in _BASE_NOTES),
    None,
]

AGENT_TEXTS = [
    None,
    *(f"AG{k:04d}" for k in range(1, 1 + sum(p.agents for p in CHANNEL_PROFILES.values()))),
]


@dataclass
class InteractionLook:
    """Per generated record: how its export row is spelled (codes into the *_TEXTS lists)."""

    channel_text: Int
    reason_text: Int
    note: Int
    agent: Int  # 0 = self-service, no agent
    updated: Int  # epoch seconds of the version
    updated_missing: Bool
    ts_style: NDArray[np.int8]
    bool_style: NDArray[np.int8]
    defect: NDArray[np.int32]
    file: Int


def _interaction_look(
    rng: np.random.Generator, people: Customers, contacts: Contacts
) -> InteractionLook:
    n = len(contacts.started)
    reason = np.where(contacts.reason < 0, len(REASONS), contacts.reason).astype(np.int64)
    note = reason * 3 + rng.integers(0, 3, n)
    greeted = rng.random(n, dtype=np.float32) < 0.3
    name_code = 1 + people.first_name_code[contacts.customer]
    note = np.where(greeted, len(_BASE_NOTES) * name_code + note, note)
    no_note = rng.random(n, dtype=np.float32) < 0.5
    note = np.where(no_note, len(NOTE_TEXTS) - 1, note)
    agents = np.array([p.agents for p in CHANNEL_PROFILES.values()])
    pool = agents[contacts.channel]
    first_agent = np.concatenate([[1], 1 + np.cumsum(agents)])[contacts.channel]
    agent = np.where(pool > 0, first_agent + rng.integers(0, 1 << 30, n) % np.maximum(pool, 1), 0)
    spelling = _draw(rng, (0.94, 0.03, 0.02, 0.01), n)  # as is, Capitalised, UPPER, padded
    return InteractionLook(
        channel_text=contacts.channel.astype(np.int64) * 4 + spelling,
        reason_text=reason * 3 + _draw(rng, (0.95, 0.03, 0.02), n),
        note=note,
        agent=agent,
        updated=contacts.started + contacts.handle + rng.integers(0, 30 * 60, n),
        updated_missing=rng.random(n, dtype=np.float32) < 0.03,
        ts_style=_draw(rng, TIMESTAMP_STYLE_SHARES, n),
        bool_style=rng.integers(0, len(BOOLEAN_SPELLINGS), n).astype(np.int8),
        defect=np.full(n, -1, dtype=np.int32),
        file=np.zeros(n, dtype=np.int64),
    )


def _interaction_rows(
    rows: Int, people: Customers, contacts: Contacts, look: InteractionLook, id_width: int
) -> pl.DataFrame:
    """The typed export rows of those records (a record may repeat: exact duplicates)."""
    customer = _index(contacts.customer[rows])
    cents = contacts.revenue_cents[rows]
    has_revenue = contacts.has_revenue[rows]
    margin_cents = np.rint(cents * people.margin_rate[contacts.customer[rows]])
    return pl.DataFrame(
        {
            "interaction_id": _ids("I", rows + 1, id_width),
            "customer_id": people.ids.gather(customer),
            "channel": _lookup(CHANNEL_TEXTS, look.channel_text[rows]),
            "started_at": _utc(contacts.started[rows]),
            "handle_seconds": contacts.handle[rows].astype(np.int64),
            "queue_seconds": pl.Series(contacts.queue[rows]).fill_nan(None).cast(pl.Int64),
            "resolved": contacts.resolved[rows],
            "reason": _lookup(REASON_TEXTS, look.reason_text[rows]),
            "revenue": _where(has_revenue, pl.Series(cents / 100.0)),
            "margin": _where(has_revenue, pl.Series(margin_cents / 100.0)),
            "currency": pl.repeat("EUR", len(rows), eager=True, dtype=pl.String),
            "agent_id": _lookup(AGENT_TEXTS, look.agent[rows]),
            "updated_at": _where(~look.updated_missing[rows], _utc(look.updated[rows])),
            "customer_name": people.name.gather(customer),
            "email": people.email.gather(customer),
            "phone": people.phone.gather(customer),
            "notes": _lookup(NOTE_TEXTS, look.note[rows]),
            "_ts_style": look.ts_style[rows],
            "_bool_style": look.bool_style[rows],
            "_defect": look.defect[rows],
            "_file": look.file[rows].astype(np.int32),
        }
    )


def _interactions(
    rng: np.random.Generator, people: Customers, contacts: Contacts, options: GenerateOptions
) -> SourcePlan:
    n = len(contacts.started)
    id_width = max(9, len(str(n)))
    look = _interaction_look(rng, people, contacts)
    count = _file_count(n, options.days, options.formats)
    bounds = _split(n, count)
    look.file = np.repeat(np.arange(count), np.diff(bounds))

    personal = ("customer_name", "email", "phone", "notes")
    contract_names = INTERACTIONS_RAW.names
    files: list[ExportFile] = []
    for i, dialect in enumerate(_file_dialects("interactions", count + 1, options.formats, 0)):
        if i == count:  # the later re-export: every column, plain dialect
            dialect.update(bom=False, messy_header=False, extra=())
            reexport_day = options.end_date + timedelta(days=1)
            files.append(
                ExportFile(
                    "interactions",
                    f"interactions_reexport_{reexport_day:%Y%m%d}",
                    columns=(*contract_names, *personal),
                    **dialect,
                )
            )
            break
        dropped = set()
        if i % 2 == 1:
            dropped.add("margin")  # servio falls back to gross_margin_rate
        if i % 3 == 2:
            dropped.add("currency")
        if i == 1:
            dropped.add("updated_at")  # versions default to started_at
        columns = tuple(c for c in (*contract_names, *personal) if c not in dropped)
        span = _span(contacts.started[bounds[i] : bounds[i + 1]])
        files.append(
            ExportFile(
                "interactions", f"interactions_{i + 1:03d}_{span}", columns=columns, **dialect
            )
        )

    # Defects, exact duplicates and re-exports: a broken record is never copied or re-exported,
    # so every id of a broken row is unique to it.
    messy = round(options.messiness * n)
    look.defect = _assign_defects(rng, files, look.file, messy - messy // 10, INTERACTION_DEFECTS)
    clean = look.defect < 0
    valid_records = np.flatnonzero(clean)
    reexported = np.sort(
        rng.choice(
            valid_records, size=round(options.reexport_rate * len(valid_records)), replace=False
        )
    )
    rows, duplicates = _with_duplicates(rng, valid_records, messy // 10, bounds, look.file)
    reexports = _reexport(
        rng, _interaction_rows(reexported, people, contacts, look, id_width), count
    )
    revenue_cents = int(contacts.revenue_cents[clean & contacts.has_revenue].sum())
    revenue_cents += _cents(reexports["revenue"]) - int(
        contacts.revenue_cents[reexported][contacts.has_revenue[reexported]].sum()
    )
    customers = np.bincount(contacts.customer[clean], minlength=len(people.intensity))

    def rows_of(part: Int) -> Callable[[], pl.DataFrame]:
        return lambda: _interaction_rows(part, people, contacts, look, id_width)

    parts = np.split(rows, np.cumsum(np.bincount(look.file[rows], minlength=count))[:-1])
    exports = [
        (spec, len(part), rows_of(part)) for spec, part in zip(files[:count], parts, strict=True)
    ]
    exports.append((files[-1], reexports.height, lambda: reexports))
    return SourcePlan(
        files=exports,
        defects=INTERACTION_DEFECTS,
        timestamps=("started_at", "updated_at"),
        booleans=("resolved",),
        clean=clean,
        id_width=id_width,
        counts={
            "valid_ids": len(valid_records),
            "bad_rows": n - len(valid_records),
            "duplicate_rows": duplicates,
            "reexport_rows": reexports.height,
            "customers": int(np.count_nonzero(customers)),
        },
        revenue_cents=revenue_cents,
    )


def _cents(money: pl.Series) -> int:
    return int((money.fill_null(0.0) * 100).round(0).cast(pl.Int64).sum())


def _reexport(rng: np.random.Generator, original: pl.DataFrame, file_index: int) -> pl.DataFrame:
    """Later versions: back office closed some open issues, reversed some sales, added a note."""
    n = original.height
    later = pl.lit(pl.Series(rng.integers(3600, 4 * DAY, n)))
    closes = pl.lit(pl.Series(rng.random(n) < 0.4))
    reversed_sale = pl.lit(pl.Series(rng.random(n) < 0.1)) & (pl.col("revenue") > 0)
    return original.with_columns(
        updated_at=pl.coalesce("updated_at", "started_at") + pl.duration(seconds=later),
        resolved=pl.col("resolved") | closes,
        revenue=pl.when(reversed_sale).then(pl.lit(0.0)).otherwise("revenue"),
        margin=pl.when(reversed_sale).then(pl.lit(0.0)).otherwise("margin"),
        notes=pl.concat_str(
            pl.col("notes"), pl.lit("Updated by back office"), separator="\n", ignore_nulls=True
        ),
        _file=pl.lit(file_index, dtype=pl.Int32),
    )
