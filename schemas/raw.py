"""Raw export contracts (SPEC §1.3, §1.4): what a landed export of each source must look
like, field by field, and the frames the readers and the rules hand on (`source_row`, the
failure rows). Readers, standardisation, validation and the data dictionary derive from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from .catalog import SCALE_MAX, SCALE_MIN, ItemCatalog
from .channels import CHANNELS

TIMESTAMP_FLOOR = "2000-01-01T00:00:00Z"
MAX_ID_LENGTH = 64
MAX_ABS_MONEY = 10**9

# The 1-based record number of a row in its file: added by the readers, kept through every
# step, published as the lineage column `source_row` and as quarantine's `row_number`.
SOURCE_ROW = "source_row"
# Columns a raw reader adds beside the contract columns (no contract column starts with "__",
# and unknown columns are dropped by the reader, so none of these can collide).
RAW_MALFORMED = "__malformed__"  # set when the line is not a record: why
RAW_NOT_TEXT = "__not_text__"  # ';'-joined contract fields whose value was not text

# One row per (row, broken rule): what type checks, rules and malformed records report, and
# what becomes a quarantine row's reasons.
FAILURE_SCHEMA = pl.Schema({SOURCE_ROW: pl.Int64, "reason_code": pl.String, "detail": pl.String})

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
