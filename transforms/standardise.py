"""Raw text records → typed, standardised records (SPEC §1.2–§1.4), and which values failed to parse.

Input is what `servio.raw.readers` returns: String columns plus `source_row`, and `__not_text__`
naming fields whose value was not text (a JSON object, a Parquet struct: never stringified).
Parsing never drops a row: a value that cannot be read becomes null and its field name
is listed in `INVALID`, so the row can be quarantined with the reason `type:<field>`.
"""

from __future__ import annotations

import polars as pl

from ..schemas.raw import RAW_NOT_TEXT, SOURCE_ROW, RawContract, RawField
from ..schemas.table import TIMESTAMP

INVALID = "invalid_fields"  # List[String]: fields whose text could not be parsed
_TYPED = "__typed__"  # prefix of a field's parsed value while its text is still needed
_FAILED = "__failed__"  # prefix of a field's "text present, value unparseable" flag
_REST = "__rest__"  # prefix of a timestamp parsed by the general parse (`parse_timestamps`)

_TRUE = ("true", "1", "yes", "y")
_FALSE = ("false", "0", "no", "n")
_ISO = (
    r"^(?<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?<time>\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?))?"
    r"\s*(?<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
# The form of nearly every exported timestamp: whole seconds, UTC, no fraction.
_CANONICAL_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
_CANONICAL_UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# UTC offsets that exist (SPEC: ISO-8601): from -14:00 to +14:00, minutes below 60.
MAX_OFFSET_MINUTES = 14 * 60
# Keys and codes (ids, channel, currency) hold no control character at all; other text
# may hold a tab or a line break (an RFC 4180 quoted field), never NUL or another control.
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
_CONTROL_IN_TEXT = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"

NOT_TEXT_DETAIL = "a value that is not text (a JSON object or array, a nested or binary value)"

EXPECTED_FORM = {
    "timestamp": "an ISO-8601 timestamp",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true/false, 1/0, yes/no or y/n",
    "decimal": "a decimal number",
    "id": "text without control characters",
    "string": "text without control characters",
    "currency": "a currency code",
}


def text(column: str) -> pl.Expr:
    """Trimmed text; empty means null (SPEC §1.2). `standardise` does the same in two steps."""
    trimmed = pl.col(column).str.strip_chars()
    return pl.when(trimmed.str.len_bytes() > 0).then(trimmed)


def parse_timestamps(
    frame: pl.LazyFrame, names: dict[str, str], source_timezone: str
) -> pl.LazyFrame:
    """`frame` with each text column of `names` parsed into its output column: ISO-8601 text →
    UTC microseconds, null when unparseable. An offset or Z is honoured; naive text is local
    time in `source_timezone` (a non-existent local time in a DST gap is unparseable).

    Values of the one form exports mostly hold, `2026-11-20T09:15:00Z`, are parsed by one
    `strptime` (about 4× faster than the general parse); every other value, and one of that
    form `strptime` refuses, goes through `parse_any_timestamp`, which gives the same
    instant for the values the fast path takes (tests/test_standardise.py checks it). The
    fast parse is a column of its own before the general parse reads it: written as one
    expression, Polars computed it twice (~7 % of standardise's CPU).
    """
    if not names:
        return frame
    fast = frame.with_columns(
        pl.when(pl.col(text).str.contains(_CANONICAL_UTC))
        .then(pl.col(text))
        .str.strptime(pl.Datetime("us"), _CANONICAL_UTC_FORMAT, strict=False)
        .dt.replace_time_zone("UTC")
        .alias(out)
        for text, out in names.items()
    )
    return fast.with_columns(
        pl.coalesce(
            out,
            parse_any_timestamp(pl.when(pl.col(out).is_null()).then(pl.col(text)), source_timezone),
        ).alias(out)
        for text, out in names.items()
    )


def parse_any_timestamp(raw: pl.Expr, source_timezone: str) -> pl.Expr:
    """Any ISO-8601 form SPEC §1.3 allows (see `parse_timestamp`).

    Every step works on fields of the one struct the regex returns, so the regex runs once
    per value (written as separate expressions it ran once per use: 3× slower).
    """
    field = pl.field
    # A date alone is midnight; a null value stays null without a string made for it.
    time = field("time").str.replace(",", ".")
    time = time.fill_null(pl.when(field("date").is_not_null()).then(pl.lit("00:00:00")))
    time = pl.when(time.str.len_chars() == 5).then(time + ":00").otherwise(time)
    parts = raw.str.extract_groups(_ISO).struct.with_fields(
        local=(field("date") + "T" + time).str.strptime(
            pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f", strict=False
        ),
        offset=field("offset").str.to_uppercase().str.replace(":", ""),
    )
    offset = field("offset")
    sign = pl.when(offset.str.starts_with("-")).then(-1).otherwise(1)
    hours = offset.str.slice(1, 2).cast(pl.Int64, strict=False)
    minutes = offset.str.slice(3, 2).cast(pl.Int64, strict=False).fill_null(0)
    offset_minutes = (
        pl.when(offset == "Z")
        .then(0)
        # +14:30 or +05:75 is no offset anywhere: the value is unparseable, not shifted.
        .when((minutes < 60) & (hours * 60 + minutes <= MAX_OFFSET_MINUTES))
        .then(sign * (hours * 60 + minutes))
    )
    aware = (field("local") - pl.duration(minutes=offset_minutes)).dt.replace_time_zone("UTC")
    naive = (
        field("local")
        .dt.replace_time_zone(source_timezone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )
    utc = pl.when(offset.is_null()).then(naive).otherwise(aware).cast(TIMESTAMP)
    return parts.struct.with_fields(utc=utc).struct.field("utc")


def is_code(field: RawField) -> bool:
    """Keys and codes: ids (`*_id`), fields with a fixed set of values, currencies."""
    return (
        field.kind in ("id", "currency")
        or field.name.endswith("_id")
        or field.allowed is not None
        or field.max_length is not None
    )


def _parsed(field: RawField, raw: pl.Expr) -> pl.Expr:
    """`raw`: the field's trimmed text, empty as null (`text`). Timestamps are parsed over
    the whole frame (`parse_timestamps`)."""
    match field.kind:
        case "id" | "string":
            clean = ~raw.str.contains(_CONTROL if is_code(field) else _CONTROL_IN_TEXT)
            return pl.when(clean).then(raw.str.to_lowercase() if field.lower_case else raw)
        case "currency":
            return pl.when(~raw.str.contains(_CONTROL)).then(raw.str.to_uppercase())
        case "number":
            return raw.cast(pl.Float64, strict=False)
        case "integer":
            number = raw.cast(pl.Float64, strict=False)
            whole = number.is_finite() & (number == number.floor()) & (number.abs() < 2**53)
            return pl.when(whole).then(number).cast(pl.Int64)
        case "boolean":
            lower = raw.str.to_lowercase()
            return pl.when(lower.is_in(_TRUE)).then(True).when(lower.is_in(_FALSE)).then(False)
        case "decimal":
            # The text is parsed exactly and rounded half-even once, to the cent
            # ("2.0250000000000004" → 2.03, "1.005" → 1.00): Polars rounds on the digits.
            return raw.cast(pl.Decimal(18, 2), strict=False)
    raise ValueError(f"unknown kind {field.kind!r} for {field.name}")


def missing_required(columns: list[str], contract: RawContract) -> list[str]:
    """Required contract columns that a file's header lacks."""
    return [name for name in contract.required if name not in columns]


def standardise(raw: pl.LazyFrame, contract: RawContract, source_timezone: str) -> pl.LazyFrame:
    """Typed contract columns (absent optional ones as nulls), `source_row` and `INVALID`.

    Unknown extra columns, personal-data columns among them, are dropped here.
    """
    present = set(raw.collect_schema().names())
    absent = [f.name for f in contract.fields if f.name not in present]
    raw = raw.with_columns(pl.lit(None, pl.String).alias(name) for name in absent)
    # Each field's text is trimmed once, in place, before it is parsed (`text`, in two frame
    # steps): Polars shares no `when/then` expression between its uses, and written as one
    # expression the trim ran twice per field (2.4x the cost of the two steps).
    fields = [f.name for f in contract.fields]
    trimmed = raw.with_columns(pl.col(fields).str.strip_chars()).with_columns(
        pl.when(pl.col(name).str.len_bytes() > 0).then(pl.col(name)).alias(name) for name in fields
    )
    # Parse each field once (timestamps are the costly part), then compare with its text.
    parsed = parse_timestamps(
        trimmed.with_columns(
            _parsed(f, pl.col(f.name)).alias(_TYPED + f.name)
            for f in contract.fields
            if f.kind != "timestamp"
        ),
        {f.name: _TYPED + f.name for f in contract.fields if f.kind == "timestamp"},
        source_timezone,
    )
    checked = [f.name for f in contract.fields if f.kind in EXPECTED_FORM]
    typed = parsed.select(
        pl.col(SOURCE_ROW),
        *[pl.col(_TYPED + f.name).alias(f.name) for f in contract.fields],
        *[
            (
                (pl.col(name).is_not_null() & pl.col(_TYPED + name).is_null())
                | _flagged_not_text(name, present)
            ).alias(_FAILED + name)
            for name in checked
        ],
    )
    return typed.join(
        _invalid_lists(typed, checked), on=SOURCE_ROW, how="left", maintain_order="left"
    ).select(
        pl.col(SOURCE_ROW),
        *[pl.col(f.name) for f in contract.fields],
        pl.col(INVALID).fill_null(pl.lit([], pl.List(pl.String))),
    )


def _flagged_not_text(name: str, present: set[str]) -> pl.Expr:
    """The reader found a value that is not text in this field (its text is null)."""
    if RAW_NOT_TEXT not in present:
        return pl.lit(False)
    flagged = pl.col(RAW_NOT_TEXT).str.split(";").list.contains(pl.lit(name))
    return flagged.fill_null(False)


def _invalid_lists(typed: pl.LazyFrame, checked: list[str]) -> pl.LazyFrame:
    """`INVALID` for the rows that have a failure, from the failure flags of the `checked`
    fields. Going long and back touches only the failing values; a list built on every row
    took longer than the parsing itself. A group keeps its rows' order (the fields' order)."""
    flags = [_FAILED + name for name in checked]
    if not flags:
        return typed.select(SOURCE_ROW, pl.lit([], pl.List(pl.String)).alias(INVALID)).clear()
    return (
        typed.select(SOURCE_ROW, *flags)
        .unpivot(index=SOURCE_ROW, variable_name=INVALID, value_name="failed")
        .filter(pl.col("failed"))
        .group_by(SOURCE_ROW)
        .agg(pl.col(INVALID).str.strip_prefix(_FAILED))
    )


def type_failures(
    raw: pl.LazyFrame, standardised: pl.LazyFrame, contract: RawContract
) -> pl.LazyFrame:
    """One row per value that could not be parsed: `source_row`, `reason_code`, `detail`."""
    kinds = pl.DataFrame(
        {
            "field": [f.name for f in contract.fields],
            "form": [EXPECTED_FORM.get(f.kind, "") for f in contract.fields],
        }
    ).lazy()
    failed = (
        standardised.select(SOURCE_ROW, pl.col(INVALID).alias("field"))
        .explode("field")
        .drop_nulls("field")
        .join(kinds, on="field")
    )
    text_columns = [f.name for f in contract.fields if f.kind in EXPECTED_FORM]
    present = set(raw.collect_schema().names())
    # Only the rows with a failed value are unpivoted (not every value of the file).
    values = (
        raw.select(SOURCE_ROW, *[pl.col(n) for n in text_columns if n in present])
        .join(failed.select(SOURCE_ROW).unique(), on=SOURCE_ROW, how="semi")
        .unpivot(index=SOURCE_ROW, variable_name="field", value_name="value")
    )
    # A contract column's value may be quoted (control characters shown as U+FFFD); a value
    # that was not text (a JSON object, a Parquet struct) is described, never stringified.
    quoted = pl.col("value").str.slice(0, 80).str.replace_all(_CONTROL, "\ufffd")
    return failed.join(values, on=[SOURCE_ROW, "field"], how="left").select(
        SOURCE_ROW,
        ("type:" + pl.col("field")).alias("reason_code"),
        pl.when(pl.col("value").is_null())
        .then(pl.format("{} must be {}, got {}", "field", "form", pl.lit(NOT_TEXT_DETAIL)))
        .otherwise(pl.format("{} must be {}, got '{}'", "field", "form", quoted))
        .alias("detail"),
    )
