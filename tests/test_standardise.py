"""Parsing and standardisation of raw text records (SPEC §1.2–§1.4)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from servio.schemas.raw import INTERACTIONS_RAW
from servio.schemas.table import TIMESTAMP
from servio.transforms.standardise import (
    INVALID,
    missing_required,
    parse_any_timestamp,
    parse_timestamps,
    standardise,
    type_failures,
)


def _parsed(values: list[str | None], zone: str) -> pl.DataFrame:
    """`parse_timestamps` of one column `t` into `ts`."""
    frame = pl.DataFrame({"t": values}, schema={"t": pl.String}).lazy()
    return parse_timestamps(frame, {"t": "ts"}, zone).collect()


def _ts(values: list[str | None], zone: str = "UTC") -> list[datetime | None]:
    return _parsed(values, zone)["ts"].to_list()


def _raw(**columns: list[str | None]) -> pl.LazyFrame:
    n = len(next(iter(columns.values())))
    base = {
        "interaction_id": [f"i{k}" for k in range(n)],
        "customer_id": ["c"] * n,
        "channel": ["phone"] * n,
        "started_at": ["2026-01-05T10:00:00Z"] * n,
        "handle_seconds": ["60"] * n,
        "resolved": ["true"] * n,
    }
    base.update(columns)
    return pl.DataFrame(
        {"source_row": list(range(1, n + 1)), **base},
        schema_overrides=dict.fromkeys(base, pl.String),
    ).lazy()


def test_offsets_and_z_convert_to_utc() -> None:
    got = _ts(
        [
            "2026-01-05T10:00:00Z",
            "2026-01-05T12:00:00+02:00",
            "2026-01-05T05:00:00-0500",
            "2026-01-05 10:00:00.123456+00:00",
        ]
    )
    assert got == [datetime(2026, 1, 5, 10, tzinfo=UTC)] * 3 + [
        datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=UTC)
    ]


def test_naive_timestamps_are_in_the_source_zone() -> None:
    # 00:30 in Paris (winter, UTC+1) is 23:30 UTC the day before.
    assert _ts(["2026-01-05T00:30:00"], "Europe/Paris") == [
        datetime(2026, 1, 4, 23, 30, tzinfo=UTC)
    ]
    assert _ts(["2026-01-05T00:30:00"], "UTC") == [datetime(2026, 1, 5, 0, 30, tzinfo=UTC)]


def test_impossible_and_garbled_timestamps_are_null() -> None:
    assert _ts(["2026-02-30T00:00:00Z", "yesterday", "2026-01-05T25:00:00", "", None]) == [None] * 5


def test_nanoseconds_truncate_to_microseconds() -> None:
    assert _ts(["2026-01-05T10:00:00.123456789Z"]) == [
        datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=UTC)
    ]


def test_booleans_accept_the_spec_words_in_any_case() -> None:
    out = standardise(
        _raw(resolved=["TRUE", "0", "Yes", "n", "Y", "maybe"]), INTERACTIONS_RAW, "UTC"
    ).collect()
    assert out["resolved"].to_list() == [True, False, True, False, True, None]
    assert out[INVALID].to_list()[-1] == ["resolved"]


def test_channel_and_reason_are_trimmed_and_lower_cased_and_empty_is_null() -> None:
    out = standardise(
        _raw(channel=[" Phone ", "CHAT"], reason=["Billing ", "  "]), INTERACTIONS_RAW, "UTC"
    ).collect()
    assert out["channel"].to_list() == ["phone", "chat"]
    assert out["reason"].to_list() == ["billing", None]


def test_money_rounds_half_even_to_cents() -> None:
    out = standardise(
        _raw(revenue=["2.675", "1.005", "-0.125", "10"]), INTERACTIONS_RAW, "UTC"
    ).collect()
    assert out.schema["revenue"] == pl.Decimal(18, 2)
    assert out["revenue"].to_list() == [
        Decimal("2.68"),
        Decimal("1.00"),
        Decimal("-0.12"),
        Decimal("10.00"),
    ]


def test_absent_optional_columns_become_null_and_extra_columns_are_dropped() -> None:
    out = standardise(_raw(email=["a@b.c"]), INTERACTIONS_RAW, "UTC").collect()
    assert "email" not in out.columns
    assert out["queue_seconds"].to_list() == [None]
    assert out.columns == ["source_row", *INTERACTIONS_RAW.names, INVALID]


def test_type_failures_name_the_field_and_the_value() -> None:
    raw = _raw(handle_seconds=["abc", "12"])
    failures = type_failures(
        raw, standardise(raw, INTERACTIONS_RAW, "UTC"), INTERACTIONS_RAW
    ).collect()
    assert failures.to_dicts() == [
        {
            "source_row": 1,
            "reason_code": "type:handle_seconds",
            "detail": "handle_seconds must be a number, got 'abc'",
        }
    ]


def test_missing_required_lists_absent_required_columns() -> None:
    assert missing_required(["interaction_id", "channel"], INTERACTIONS_RAW) == [
        "customer_id",
        "started_at",
        "handle_seconds",
        "resolved",
    ]


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_any_offset_round_trips_to_the_same_instant(moment: datetime, offset_minutes: int) -> None:
    from datetime import timedelta, timezone

    aware = moment.replace(
        microsecond=moment.microsecond, tzinfo=timezone(timedelta(minutes=offset_minutes))
    )
    assert _ts([aware.isoformat()]) == [aware.astimezone(UTC)]


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=n, max_size=n)


# Text of the fast path's form with any digits (month 13, hour 24, second 60, day 00, year
# 0000), near misses of it (lower-case t or z, a space, a sign, a fraction, an offset), and
# any text at all.
_canonical_shape = st.tuples(
    _digits(4), _digits(2), _digits(2), _digits(2), _digits(2), _digits(2)
).map(lambda p: f"{p[0]}-{p[1]}-{p[2]}T{p[3]}:{p[4]}:{p[5]}Z")
_near_misses = st.tuples(
    _canonical_shape, st.sampled_from(["", "t", "z", " ", "+", "-", ".5", "+00:00", "Z", "\n"])
).map(lambda p: (p[0][:-1] + p[1]) if p[1] in ("Z", "+00:00", ".5") else p[0].replace("T", p[1]))
_real = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
)


@example(["0000-01-01T00:00:00Z", "2026-02-30T10:00:00Z", "2026-11-20T24:00:00Z"])
@example(["2026-12-31T23:59:60Z", "2026-11-20t09:15:00Z", "2026-11-20T09:15:00z"])
@given(st.lists(st.one_of(_canonical_shape, _near_misses, _real, st.text(max_size=30)), max_size=8))
def test_the_fast_path_gives_what_the_general_parse_gives(values: list[str]) -> None:
    """`parse_timestamps` takes `2026-11-20T09:15:00Z` by one strptime; whatever it takes
    that way must be exactly what the general ISO-8601 parse makes of it (or null for both)."""
    frame = pl.DataFrame({"t": [*values, None]}, schema={"t": pl.String})
    for zone in ("UTC", "America/New_York"):
        parsed = _parsed([*values, None], zone)
        assert parsed.schema["ts"] == TIMESTAMP
        # Microseconds since the epoch: year 0 has no Python datetime.
        fast = parsed["ts"].to_physical().to_list()
        general = frame.select(parse_any_timestamp(pl.col("t"), zone).to_physical())
        assert fast == general.to_series().to_list(), list(zip(values, fast, strict=False))


_any_timestamp = st.one_of(_canonical_shape, _near_misses, _real, st.text(max_size=30), st.none())


@given(st.lists(st.tuples(_any_timestamp, _any_timestamp), min_size=1, max_size=12))
def test_each_timestamp_column_of_each_row_gets_its_own_parse(
    pairs: list[tuple[str | None, str | None]],
) -> None:
    """Two timestamp columns, each value by the fast path or the general parse: each lands in
    its own row and column, as the general parse alone makes it."""
    started, updated = [list(column) for column in zip(*pairs, strict=True)]
    out = standardise(
        _raw(started_at=started, updated_at=updated), INTERACTIONS_RAW, "Europe/Paris"
    ).collect()
    texts = pl.DataFrame({"s": started, "u": updated}, schema={"s": pl.String, "u": pl.String})
    general = texts.select(
        parse_any_timestamp(pl.col(c).str.strip_chars(), "Europe/Paris").to_physical().alias(c)
        for c in ("s", "u")
    )
    assert out["source_row"].to_list() == list(range(1, len(pairs) + 1))
    assert out["started_at"].to_physical().to_list() == general["s"].to_list()
    assert out["updated_at"].to_physical().to_list() == general["u"].to_list()


@given(st.text(max_size=40))
def test_parsing_never_raises_on_arbitrary_text(value: str) -> None:
    out = standardise(
        _raw(started_at=[value], handle_seconds=[value], resolved=[value], revenue=[value]),
        INTERACTIONS_RAW,
        "Europe/Paris",
    ).collect()
    assert out.height == 1


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_dst_gap_local_time_is_unparseable_not_shifted(zone: str) -> None:
    got = _ts(["2026-03-08T02:30:00"], zone)
    assert got == ([datetime(2026, 3, 8, 2, 30, tzinfo=UTC)] if zone == "UTC" else [None])


@given(st.sampled_from("+-"), st.integers(0, 99), st.integers(0, 99), st.booleans())
def test_offsets_outside_14_hours_or_with_60_minutes_are_unparseable(
    sign: str, hours: int, minutes: int, colon: bool
) -> None:
    """ISO-8601 offsets run from -14:00 to +14:00; `+05:75` or `+15:00` is no instant."""
    offset = f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"
    [got] = _ts([f"2026-01-05T12:00:00{offset}"])
    total = hours * 60 + minutes
    if minutes >= 60 or total > 14 * 60:
        assert got is None, offset
    else:
        from datetime import timedelta

        shift = timedelta(minutes=total if sign == "+" else -total)
        assert got == datetime(2026, 1, 5, 12, tzinfo=UTC) - shift


decimal_texts = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{whole}{fraction}{exponent}",
    st.sampled_from(["", "-", "+"]),
    st.integers(0, 10**12).map(str),
    st.one_of(st.just(""), st.text("0123456789", min_size=0, max_size=40).map(lambda f: "." + f)),
    st.one_of(st.just(""), st.integers(-6, 6).map(lambda e: f"e{e}")),
)


@given(decimal_texts)
def test_money_is_parsed_exactly_from_the_text_and_rounded_half_even_once(text: str) -> None:
    from decimal import ROUND_HALF_EVEN, localcontext

    with localcontext() as context:
        context.prec = 100
        exact = Decimal(text)
        expected = exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    [got] = standardise(_raw(revenue=[text]), INTERACTIONS_RAW, "UTC").collect()["revenue"]
    assert got == (expected if abs(expected) < Decimal(10) ** 16 else None), text


def test_money_named_examples_round_once() -> None:
    out = standardise(
        _raw(revenue=["2.0250000000000004", "1.005", "2.025", "1.0149999999999999999999"]),
        INTERACTIONS_RAW,
        "UTC",
    ).collect()
    assert out["revenue"].to_list() == [
        Decimal("2.03"),  # not 2.02: rounding to 12 places first made it a tie
        Decimal("1.00"),
        Decimal("2.02"),
        Decimal("1.01"),
    ]


CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]


@given(st.sampled_from(CONTROLS), st.sampled_from(["interaction_id", "customer_id", "channel"]))
def test_control_characters_in_keys_and_codes_are_type_errors(control: str, field: str) -> None:
    value = {"interaction_id": "I1", "customer_id": "C1", "channel": "phone"}[field]
    raw = _raw(**{field: [value[:1] + control + value[1:]]})
    out = standardise(raw, INTERACTIONS_RAW, "UTC").collect()
    assert out[field].to_list() == [None]
    assert out[INVALID].to_list() == [[field]]
    [detail] = type_failures(raw, out.lazy(), INTERACTIONS_RAW).collect()["detail"]
    assert control not in detail  # shown as U+FFFD


def test_free_text_may_hold_line_breaks_but_no_nul() -> None:
    out = standardise(
        _raw(reason=["two\nlines", "tab\there", "nul\x00", "bell\x07"]), INTERACTIONS_RAW, "UTC"
    ).collect()
    assert out["reason"].to_list() == ["two\nlines", "tab\there", None, None]
    assert out[INVALID].to_list() == [[], [], ["reason"], ["reason"]]


def test_a_value_flagged_as_not_text_is_a_type_error_described_not_quoted() -> None:
    raw = _raw(channel=[None, "chat"]).with_columns(
        pl.Series("__not_text__", ["channel", None], dtype=pl.String)
    )
    out = standardise(raw, INTERACTIONS_RAW, "UTC").collect()
    assert out[INVALID].to_list() == [["channel"], []]
    [detail] = type_failures(raw, out.lazy(), INTERACTIONS_RAW).collect()["detail"]
    assert "not text" in detail
