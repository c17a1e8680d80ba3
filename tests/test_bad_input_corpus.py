"""A bad-input corpus (issue 3, item 6): every kind of broken export, staged end to end.

Each case lands one file, built here from literal bytes or frames (no committed fixtures),
in its own raw root, and calls the stage step (`servio.steps.stage.stage_file`) directly (no Prefect). Every case
asserts its exact outcome and that nothing is lost (SPEC §3):

- rejected files: status `rejected`, the exact reason code, one file-level quarantine row
  (`row_number` null, `reason_codes == "file:<code>"`), raw bytes unchanged;
- refused files (a location verdict, retried by the next run): status `refused`, the exact
  reason code, nothing staged;
- row-level cases: the exact set of (row_number, reason_codes) quarantined, the number of
  valid rows, and `rows_read == rows_valid + rows_quarantined`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from servio.config import Settings, load_settings
from servio.lake.lake import Lake
from servio.raw import landing
from servio.schemas.tables import INGESTED, REFUSED, REJECTED
from servio.steps.context import RunContext
from servio.steps.stage import stage_file
from servio.steps.staging import StagedFile
from servio.validation.gx import GxValidator

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e

os.environ["GX_ANALYTICS_ENABLED"] = "false"  # GX is imported lazily, after this

INGESTED_AT = datetime(2026, 11, 27, tzinfo=UTC)

# ---------------------------------------------------------------------------------------
# building exports

INTERACTION_COLUMNS = (
    "interaction_id",
    "customer_id",
    "channel",
    "started_at",
    "handle_seconds",
    "queue_seconds",
    "resolved",
    "reason",
    "revenue",
    "currency",
)
GOOD_INTERACTION: dict[str, str] = {
    "interaction_id": "I1",
    "customer_id": "C1",
    "channel": "phone",
    "started_at": "2026-11-20T10:00:00Z",
    "handle_seconds": "300",
    "queue_seconds": "20",
    "resolved": "true",
    "reason": "billing",
    "revenue": "19.99",
    "currency": "EUR",
}
SURVEY_COLUMNS = ("response_id", "customer_id", "submitted_at", "exp_tan1", "perc_tan1", "nps")
GOOD_SURVEY: dict[str, str] = {
    "response_id": "R1",
    "customer_id": "C1",
    "submitted_at": "2026-11-20T10:00:00Z",
    "exp_tan1": "6",
    "perc_tan1": "5",
    "nps": "9",
}


def interaction(number: int, **changes: str) -> dict[str, str]:
    return {**GOOD_INTERACTION, "interaction_id": f"I{number}", **changes}


def survey(number: int, **changes: str) -> dict[str, str]:
    return {**GOOD_SURVEY, "response_id": f"R{number}", **changes}


def csv_bytes(
    rows: list[dict[str, str]],
    columns: tuple[str, ...] = INTERACTION_COLUMNS,
    newline: str = "\n",
) -> bytes:
    """RFC 4180 text: fields with a comma, quote or line break are quoted."""

    def cell(value: str) -> str:
        if any(c in value for c in ',"\r\n'):
            return '"' + value.replace('"', '""') + '"'
        return value

    lines = [",".join(columns)] + [",".join(cell(row.get(c, "")) for c in columns) for row in rows]
    return (newline.join(lines) + newline).encode()


def jsonl_bytes(lines: list[object | str]) -> bytes:
    """One JSON value per line; a `str` item is written as the literal line."""
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _arrow_parquet(columns: dict[str, Any]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def _aware_and_exotic_parquet() -> bytes:
    """What pandas writes for aware timestamps (a fixed "+02:00" zone), beside unknown
    columns of types that have no text form (never read, never cast)."""
    import pyarrow as pa

    return _arrow_parquet(
        {
            "interaction_id": ["I1", "I2"],
            "customer_id": ["C1", "C2"],
            "channel": ["phone", "chat"],
            # 2026-11-20 12:00 at +02:00 = 10:00 UTC
            "started_at": pa.array([1_795_168_800_000_000] * 2, pa.timestamp("us", tz="+02:00")),
            "handle_seconds": pa.array([300, 60], pa.duration("s")),  # a duration is seconds
            "resolved": [True, False],
            "notes": pa.array([b"\xff\xfe", b"\x00"], pa.binary()),
            "wait": pa.array([1, 2], pa.duration("s")),
            "attrs": pa.array([[("k", "v")]] * 2, pa.map_(pa.string(), pa.string())),
            "nested": pa.array([{"a": [1]}, None], pa.struct([("a", pa.list_(pa.int64()))])),
            "Source_Row": ["x", "y"],
        }
    )


def _nested_contract_parquet() -> bytes:
    """A struct where text belongs, a list where a number belongs: type errors."""
    import pyarrow as pa

    return _arrow_parquet(
        {
            "interaction_id": ["I1", "I2"],
            "customer_id": ["C1", "C2"],
            "channel": pa.array([{"name": "phone"}, None], pa.struct([("name", pa.string())])),
            "started_at": ["2026-11-20T10:00:00Z"] * 2,
            "handle_seconds": pa.array([None, [300]], pa.list_(pa.int64())),
            "resolved": [True, False],
        }
    )


def truncated_gzip() -> bytes:
    whole = gzip.compress(csv_bytes([interaction(n) for n in range(1, 200)]))
    return whole[: len(whole) // 2]


# ---------------------------------------------------------------------------------------
# cases


@dataclass(frozen=True)
class Case:
    name: str
    path: str  # relative to the raw root
    content: bytes | Callable[[], bytes]
    rejected: str | None = None  # the file-level reason code
    refused: str | None = None  # the location's reason code (the file is not read)
    valid: int = 0
    quarantined: frozenset[tuple[int, str]] = field(default_factory=frozenset)
    timezone: str = "UTC"
    xfail: str | None = None

    def data(self) -> bytes:
        return self.content() if callable(self.content) else self.content


def rows(*pairs: tuple[int, str]) -> frozenset[tuple[int, str]]:
    return frozenset(pairs)


LONG_ID = "x" * 65
TEN_MB = "n" * (10 * 1024 * 1024)
CASES = [
    # ---- file level ----------------------------------------------------------------------
    Case("zero_byte_csv", "interactions/empty.csv", b"", rejected="no_header"),
    Case("zero_byte_jsonl", "surveys/empty.jsonl", b"", rejected="missing_column"),
    Case("blank_first_line", "interactions/blank.csv", b"\n\nI1,C1\n", rejected="no_header"),
    Case("truncated_gzip", "interactions/cut.csv.gz", truncated_gzip, rejected="unreadable"),
    Case(
        "gzip_that_is_not_gzip",
        "interactions/fake.csv.gz",
        csv_bytes([interaction(1)]),
        rejected="unreadable",
    ),
    Case(
        "truncated_gzip_jsonl",
        "surveys/cut.jsonl.gz",
        lambda: gzip.compress(jsonl_bytes([survey(n) for n in range(1, 300)]))[:200],
        rejected="unreadable",
    ),
    Case(
        "binary_garbage_csv",
        "interactions/garbage.csv",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
        rejected="encoding",
    ),
    Case(
        "binary_garbage_parquet",
        "interactions/garbage.parquet",
        b"PAR1" + bytes(range(256)) * 4 + b"PAR1",
        rejected="unreadable",
    ),
    Case(
        "latin1_csv",
        "interactions/latin1.csv",
        csv_bytes([interaction(1, reason="réclamation")]).decode().encode("latin-1"),
        rejected="encoding",
    ),
    Case(
        "latin1_in_a_late_row",
        "interactions/latin1_late.csv",
        csv_bytes([interaction(n) for n in range(1, 50)])
        + "I99,C9,phone,2026-11-20T10:00:00Z,1,1,true,d\xe9p\xf4t,1,EUR\n".encode("latin-1"),
        rejected="encoding",
    ),
    Case(
        "latin1_jsonl",
        "surveys/latin1.jsonl",
        jsonl_bytes([survey(1)])
        + '{"response_id": "R2", "comment": "tr\xe8s"}\n'.encode("latin-1"),
        rejected="encoding",
    ),
    Case(
        "semicolon_delimited",
        "interactions/semicolon.csv",
        csv_bytes([interaction(1)]).replace(b",", b";"),
        rejected="missing_column",
    ),
    Case(
        "unbalanced_quotes",
        "interactions/quotes.csv",
        csv_bytes([interaction(1)])
        + b'I2,C2,phone,2026-11-20T10:00:00Z,300,20,true,"billing,1,EUR\n',
        rejected="malformed_csv",
    ),
    Case(
        "duplicated_header",
        "interactions/dup_header.csv",
        b"interaction_id,customer_id,Channel, channel ,started_at,handle_seconds,resolved\n",
        rejected="duplicate_header",
    ),
    Case(
        "duplicated_jsonl_keys",
        "surveys/dup_keys.jsonl",
        jsonl_bytes(
            [
                survey(1),
                '{"response_id": "R2", "Response_ID": "R9", "customer_id": "C2",'
                ' "submitted_at": "2026-11-20T10:00:00Z", "nps": 9}',
                '{"response_id": "R3", "customer_id": "C3",'
                ' "submitted_at": "2026-11-20T10:00:00Z", "nps": 9, "nps": 2}',
            ]
        ),
        valid=1,
        quarantined=rows((2, "malformed_record"), (3, "malformed_record")),
    ),
    Case(
        "missing_required_column",
        "interactions/no_resolved.csv",
        csv_bytes([interaction(1)], tuple(c for c in INTERACTION_COLUMNS if c != "resolved")),
        rejected="missing_column",
    ),
    Case(
        "missing_required_column_parquet",
        "surveys/no_submitted.parquet",
        lambda: parquet_bytes(pl.DataFrame({"response_id": ["R1"], "customer_id": ["C1"]})),
        rejected="missing_column",
    ),
    Case(
        "xlsx_extension", "interactions/export.xlsx", b"PK\x03\x04", rejected="unsupported_format"
    ),
    Case(
        "txt_extension",
        "interactions/export.txt",
        csv_bytes([interaction(1)]),
        rejected="unsupported_format",
    ),
    Case(
        "json_not_jsonl",
        "surveys/export.json",
        json.dumps([survey(1)]).encode(),
        rejected="unsupported_format",
    ),
    Case(
        "unknown_source_folder",
        "orders/export.csv",
        csv_bytes([interaction(1)]),
        refused="unknown_source",
    ),
    Case(
        "file_at_raw_root",
        "interactions.csv",
        csv_bytes([interaction(1)]),
        refused="unknown_source",
    ),
    # ---- readable files, row level ---------------------------------------------------------
    Case("header_only", "interactions/header_only.csv", csv_bytes([]), valid=0),
    Case(
        "header_only_no_final_newline",
        "interactions/header_only_nonl.csv",
        csv_bytes([]).rstrip(b"\n"),
        valid=0,
    ),
    Case(
        "crlf_line_endings",
        "interactions/crlf.csv",
        csv_bytes([interaction(1), interaction(2, reason="")], newline="\r\n"),
        valid=2,
    ),
    Case(
        "bom_and_messy_header",
        "interactions/bom.csv",
        b"\xef\xbb\xbf"
        + csv_bytes([interaction(1)]).replace(b"interaction_id,", b" Interaction_ID ,", 1),
        valid=1,
    ),
    Case(
        "bom_jsonl",
        "surveys/bom.jsonl",
        b"\xef\xbb\xbf" + jsonl_bytes([survey(1), survey(2)]),
        valid=2,
    ),
    Case(
        "quoted_commas_quotes_and_newlines",
        "interactions/rfc4180.csv",
        csv_bytes(
            [interaction(1, reason='billing, "urgent"\nsecond line'), interaction(2)],
        ),
        valid=2,
    ),
    Case(
        "ten_mb_field",
        "interactions/big.csv",
        lambda: csv_bytes(
            [interaction(1, notes=TEN_MB), interaction(2, customer_id=TEN_MB)],
            (*INTERACTION_COLUMNS, "notes"),
        ),
        valid=1,
        quarantined=rows((2, "length:customer_id")),
    ),
    Case(
        "ragged_row_more_fields_than_header",
        "interactions/ragged.csv",
        csv_bytes([interaction(1)])
        + b"I2,C2,phone,2026-11-20T10:00:00Z,300,20,true,x,1,EUR,extra\n",
        rejected="malformed_csv",
    ),
    Case(
        "short_row_fewer_fields_than_header",
        "interactions/short.csv",
        csv_bytes([interaction(1)]) + b"I2,C2,phone\n",
        valid=1,
        quarantined=rows((2, "required:handle_seconds;required:resolved;required:started_at")),
    ),
    Case(
        "wrong_types",
        "interactions/types.csv",
        csv_bytes(
            [
                interaction(1, started_at="yesterday"),
                interaction(2, handle_seconds="5 min"),
                interaction(3, resolved="maybe"),
                interaction(4, revenue="12,50"),
                interaction(5, queue_seconds="soon"),
                interaction(6, resolved="YES", revenue="1e3"),
            ]
        ),
        valid=1,
        quarantined=rows(
            (1, "type:started_at"),
            (2, "type:handle_seconds"),
            (3, "type:resolved"),
            (4, "type:revenue"),
            (5, "type:queue_seconds"),
        ),
    ),
    Case(
        "nan_and_infinity",
        "interactions/nan.csv",
        csv_bytes(
            [
                interaction(1, handle_seconds="NaN"),
                interaction(2, queue_seconds="Infinity"),
                interaction(3, handle_seconds="-inf"),
                interaction(4, revenue="NaN"),
                interaction(5, revenue="Infinity"),
            ]
        ),
        quarantined=rows(
            (1, "range:handle_seconds"),
            (2, "range:queue_seconds"),
            (3, "range:handle_seconds"),
            (4, "type:revenue"),
            (5, "type:revenue"),
        ),
    ),
    Case(
        "nan_in_survey_integers",
        "surveys/nan.jsonl",
        jsonl_bytes(
            [
                survey(1, nps="NaN"),
                '{"response_id": "R2", "customer_id": "C2", "submitted_at": '
                '"2026-11-20T10:00:00Z", "perc_tan1": Infinity}',
                survey(3, csat="4.5"),
            ]
        ),
        valid=0,
        quarantined=rows((1, "type:nps"), (2, "no_answer;type:perc_tan1"), (3, "type:csat")),
    ),
    Case(
        "impossible_dates",
        "interactions/dates.csv",
        csv_bytes(
            [
                interaction(1, started_at="2026-02-30T10:00:00Z"),
                interaction(2, started_at="2026-13-01"),
                interaction(3, started_at="2026-11-20T25:00:00"),
                interaction(4, started_at="2024-02-29T10:00:00+02:00"),
                interaction(5, started_at="2026-11-20 10:00"),
                interaction(6, updated_at="2026-04-31T00:00:00Z"),
            ],
            (*INTERACTION_COLUMNS, "updated_at"),
        ),
        valid=2,
        quarantined=rows(
            (1, "type:started_at"),
            (2, "type:started_at"),
            (3, "type:started_at"),
            (6, "type:updated_at"),
        ),
    ),
    Case(
        "timestamps_out_of_bounds",
        "interactions/bounds.csv",
        csv_bytes(
            [
                interaction(1, started_at="2126-01-01T00:00:00Z"),
                interaction(2, started_at="1999-12-31T23:59:59Z"),
                interaction(3, started_at="2026-11-28T00:00:00Z"),  # exactly ingestion + 1 day
                interaction(4, started_at="2026-11-28T00:00:01Z"),
                interaction(5, started_at="2000-01-01T01:00:00+02:00"),  # 1999-12-31 23:00 UTC
                interaction(6, updated_at="9999-12-31T23:59:59Z"),
                interaction(7, started_at="0001-01-01T00:00:00Z"),
            ],
            (*INTERACTION_COLUMNS, "updated_at"),
        ),
        valid=1,
        quarantined=rows(
            (1, "future:started_at"),
            (2, "too_old:started_at"),
            (4, "future:started_at"),
            (5, "too_old:started_at"),
            (6, "future:updated_at"),
            (7, "too_old:started_at"),
        ),
    ),
    Case(
        "negative_and_too_long_durations",
        "interactions/durations.csv",
        csv_bytes(
            [
                interaction(1, handle_seconds="-1"),
                interaction(2, queue_seconds="-0.5"),
                interaction(3, handle_seconds="86401"),
                interaction(4, handle_seconds="86400", queue_seconds="604800"),
                interaction(5, queue_seconds="604801"),
                interaction(6, handle_seconds="0", queue_seconds="0"),
            ]
        ),
        valid=2,
        quarantined=rows(
            (1, "range:handle_seconds"),
            (2, "range:queue_seconds"),
            (3, "range:handle_seconds"),
            (5, "range:queue_seconds"),
        ),
    ),
    Case(
        "unknown_channel",
        "interactions/channel.csv",
        csv_bytes(
            [
                interaction(1, channel="fax"),
                interaction(2, channel=" PHONE "),
                interaction(3, channel="Web"),
                interaction(4, channel="tele phone"),
            ]
        ),
        valid=2,
        quarantined=rows((1, "allowed:channel"), (4, "allowed:channel")),
    ),
    Case(
        "currency_mismatch",
        "interactions/currency.csv",
        csv_bytes(
            [
                interaction(1, currency="USD"),
                interaction(2, currency=" eur "),
                interaction(3, currency=""),
                interaction(4, currency="EURO"),
            ]
        ),
        valid=2,
        quarantined=rows((1, "currency:currency"), (4, "currency:currency")),
    ),
    Case(
        "money_bounds",
        "interactions/money.csv",
        csv_bytes(
            [
                interaction(1, revenue="1000000000.01"),
                interaction(2, revenue="-1000000000"),
                interaction(3, revenue="-12.345"),
            ]
        ),
        valid=2,
        quarantined=rows((1, "range:revenue")),
    ),
    Case(
        "ids_over_64_characters",
        "interactions/ids.csv",
        csv_bytes(
            [
                interaction(1, interaction_id=LONG_ID),
                interaction(2, customer_id="c" * 64),
                interaction(3, customer_id="é" * 65),
            ]
        ),
        valid=1,
        quarantined=rows((1, "length:interaction_id"), (3, "length:customer_id")),
    ),
    Case(
        "required_values_empty_or_blank",
        "interactions/blank_values.csv",
        csv_bytes(
            [
                interaction(1, customer_id=""),
                interaction(2, customer_id="   "),
                interaction(3, channel="", resolved=""),
            ]
        ),
        quarantined=rows(
            (1, "required:customer_id"),
            (2, "required:customer_id"),
            (3, "required:channel;required:resolved"),
        ),
    ),
    Case(
        "survey_scores_out_of_scale",
        "surveys/scores.csv",
        csv_bytes(
            [
                survey(1, perc_tan1="0"),
                survey(2, exp_tan1="8"),
                survey(3, nps="11"),
                survey(4, nps="-1"),
                survey(5, perc_tan1="7", exp_tan1="1", nps="0"),
                survey(6, csat="0", ces="8"),
            ],
            (*SURVEY_COLUMNS, "csat", "ces"),
        ),
        valid=1,
        quarantined=rows(
            (1, "range:perc_tan1"),
            (2, "range:exp_tan1"),
            (3, "range:nps"),
            (4, "range:nps"),
            (6, "range:ces;range:csat"),
        ),
    ),
    Case(
        "survey_without_answers",
        "surveys/no_answer.jsonl",
        jsonl_bytes(
            [
                {"response_id": "R1", "customer_id": "C1", "submitted_at": "2026-11-20T10:00:00Z"},
                survey(2, perc_tan1="", nps=""),  # an expectation alone is no answer
                survey(3, exp_tan1="", perc_tan1="", nps="", ces="2"),
                {**survey(4), "perc_tan1": None, "nps": None},
            ]
        ),
        valid=1,
        quarantined=rows((1, "no_answer"), (2, "no_answer"), (4, "no_answer")),
    ),
    Case(
        "conflicting_duplicate_ids",
        "interactions/conflict.csv",
        csv_bytes(
            [
                interaction(1),
                interaction(2),
                interaction(1, handle_seconds="301"),
                interaction(3),
            ]
        ),
        valid=2,
        quarantined=rows(
            (1, "conflicting_duplicate:interaction_id"),
            (3, "conflicting_duplicate:interaction_id"),
        ),
    ),
    Case(
        "conflicting_duplicate_survey_ids",
        "surveys/conflict.jsonl",
        jsonl_bytes([survey(1), survey(1, nps="3")]),
        quarantined=rows(
            (1, "conflicting_duplicate:response_id"), (2, "conflicting_duplicate:response_id")
        ),
    ),
    Case(
        "exact_duplicate_rows",
        "interactions/exact_dup.csv",
        csv_bytes([interaction(1), interaction(1), interaction(2)]),
        valid=3,
    ),
    Case(
        "versions_of_one_id_are_not_conflicts",
        "interactions/versions.csv",
        csv_bytes(
            [interaction(1), interaction(1, updated_at="2026-11-21T10:00:00Z", resolved="false")],
            (*INTERACTION_COLUMNS, "updated_at"),
        ),
        valid=2,
    ),
    Case(
        "several_faults_in_one_row",
        "interactions/several.csv",
        csv_bytes(
            [
                interaction(
                    1,
                    interaction_id=LONG_ID,
                    channel="fax",
                    started_at="2026-02-30",
                    handle_seconds="-5",
                    resolved="perhaps",
                    customer_id="",
                    currency="GBP",
                ),
                interaction(2),
            ]
        ),
        valid=1,
        quarantined=rows(
            (
                1,
                "allowed:channel;currency:currency;length:interaction_id;range:handle_seconds;"
                "required:customer_id;type:resolved;type:started_at",
            )
        ),
    ),
    Case(
        "broken_json_line_among_good_ones",
        "surveys/broken.jsonl",
        jsonl_bytes([survey(1), '{"response_id": "R2", "nps": ', survey(3), "{not json}"]),
        valid=2,
        quarantined=rows((2, "malformed_record"), (4, "malformed_record")),
    ),
    Case(
        "json_line_that_is_an_array_or_scalar",
        "surveys/arrays.ndjson",
        jsonl_bytes([survey(1), ["R2", "C2"], "42", '"a string"', "null"]),
        valid=1,
        quarantined=rows(
            (2, "malformed_record"),
            (3, "malformed_record"),
            (4, "malformed_record"),
            (5, "malformed_record"),
        ),
    ),
    Case(
        "nested_json_values",
        "interactions/nested.jsonl",
        jsonl_bytes(
            [
                {**interaction(1), "channel": {"name": "phone"}},
                {**interaction(2), "handle_seconds": [300]},
                {**interaction(3), "meta": {"crm": {"id": 7}}, "tags": ["a", "b"]},
                {**interaction(4), "handle_seconds": 300, "resolved": True, "revenue": 19.99},
            ]
        ),
        valid=2,
        # An object or array is not text: a type error, never stringified into a value.
        quarantined=rows((1, "type:channel"), (2, "type:handle_seconds")),
    ),
    Case(
        "empty_lines_in_jsonl",
        "surveys/blank_lines.jsonl",
        b"\n"
        + jsonl_bytes([survey(1)])
        + b"\n   \n\r\n"
        + jsonl_bytes([survey(2, nps="12")])
        + b"\n",
        valid=1,
        quarantined=rows((2, "range:nps")),
    ),
    Case(
        "jsonl_gz_good",
        "surveys/good.jsonl.gz",
        lambda: gzip.compress(jsonl_bytes([survey(1), survey(2)])),
        valid=2,
    ),
    Case(
        "parquet_with_wrong_column_types",
        "interactions/types.parquet",
        lambda: parquet_bytes(
            pl.DataFrame(
                {
                    "interaction_id": ["I1", "I2", "I3"],
                    "customer_id": ["C1", "C2", "C3"],
                    "channel": ["phone", "chat", "web"],
                    "started_at": [datetime(2026, 11, 20, 10, tzinfo=UTC)] * 3,
                    "handle_seconds": ["300", "abc", "12.5"],
                    "resolved": [1, 0, 2],
                    "revenue": [1.5, None, 2.0],
                }
            )
        ),
        valid=1,
        quarantined=rows((2, "type:handle_seconds"), (3, "type:resolved")),
    ),
    Case(
        "parquet_nested_and_duplicate_case_columns",
        "interactions/dup.parquet",
        lambda: parquet_bytes(pl.DataFrame({"interaction_id": ["I1"], "Interaction_ID": ["I2"]})),
        rejected="duplicate_header",
    ),
    Case(
        "offsets_beyond_14_hours_or_60_minutes",
        "interactions/offsets.csv",
        csv_bytes(
            [
                interaction(1, started_at="2026-11-20T10:00:00+14:30"),
                interaction(2, started_at="2026-11-20T10:00:00+05:75"),
                interaction(3, started_at="2026-11-20T10:00:00-1500"),
                interaction(4, started_at="2026-11-20T10:00:00+14:00"),
                interaction(5, started_at="2026-11-20T10:00:00-14:00"),
                interaction(6, started_at="2026-11-20T10:00:00+05:45"),
            ]
        ),
        valid=3,
        quarantined=rows((1, "type:started_at"), (2, "type:started_at"), (3, "type:started_at")),
    ),
    Case(
        "control_characters_in_keys_and_codes",
        "interactions/controls.csv",
        csv_bytes(
            [
                interaction(1, interaction_id="I\x001"),
                interaction(2, customer_id="C\x1b[31m"),
                interaction(3, channel="pho\x00ne"),
                interaction(4, currency="EU\x7fR"),
                interaction(5, reason="billing\nsecond line"),  # free text may break lines
                interaction(6, reason="bill\x00ing"),
            ]
        ),
        valid=1,
        quarantined=rows(
            (1, "type:interaction_id"),
            (2, "type:customer_id"),
            (3, "type:channel"),
            (4, "type:currency"),
            (6, "type:reason"),
        ),
    ),
    Case(
        "parquet_fixed_offset_timestamps_and_exotic_unknown_columns",
        "interactions/pandas.parquet",
        _aware_and_exotic_parquet,
        valid=2,
    ),
    Case(
        "parquet_nested_values_in_contract_columns",
        "interactions/nested.parquet",
        _nested_contract_parquet,
        quarantined=rows(
            (1, "required:handle_seconds;type:channel"), (2, "required:channel;type:handle_seconds")
        ),
    ),
    Case(
        "dst_gap_naive_timestamp",
        "interactions/dst.csv",
        csv_bytes(
            [
                interaction(1, started_at="2026-03-29T02:30:00"),  # does not exist in Paris
                interaction(2, started_at="2026-10-25T02:30:00"),  # ambiguous: earliest
                interaction(3, started_at="2026-03-29T03:30:00"),
                interaction(4, started_at="2026-03-29T02:30:00+01:00"),  # an offset is honoured
            ]
        ),
        valid=3,
        quarantined=rows((1, "type:started_at")),
        timezone="Europe/Paris",
    ),
]


# ---------------------------------------------------------------------------------------
# running one case


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """One curated root for the module; each case stages under its own run id."""
    from servio.validation import gx

    gx.load()  # import GX once, up front
    return Lake(tmp_path_factory.mktemp("curated"))


def settings_for(tmp_path: Path, lake: Lake, timezone: str) -> Settings:
    config = tmp_path / "servio.toml"
    config.write_text(
        f'raw_root = "{(tmp_path / "raw").as_posix()}"\n'
        f'curated_root = "{lake.root.as_posix()}"\n'
        f'source_timezone = "{timezone}"\n',
        encoding="utf-8",
    )
    return load_settings(config, environ={})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _params() -> list[Any]:
    marks: list[Any] = []
    for case in CASES:
        case_marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        marks.append(pytest.param(case, id=case.name, marks=case_marks))
    return marks


def test_case_names_are_distinct() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: Case, tmp_path: Path, lake: Lake) -> None:
    settings = settings_for(tmp_path, lake, case.timezone)
    raw_file = Path(settings.raw_root) / case.path
    raw_file.parent.mkdir(parents=True, exist_ok=True)
    raw_file.write_bytes(case.data())
    before = _sha256(raw_file)

    [landed] = list(landing.discover(Path(settings.raw_root)))
    ctx = RunContext(settings, lake, f"run-{case.name}", GxValidator(), started_at=INGESTED_AT)
    staged = stage_file(ctx, landed)

    assert _sha256(raw_file) == before, "the raw file must never be modified"
    assert raw_file.exists()
    assert staged.rows_read == staged.rows_valid + staged.rows_quarantined
    if case.refused is not None:
        assert staged.status == REFUSED, staged
        assert staged.reason is not None and staged.reason.startswith(f"{case.refused}: ")
        assert (staged.rows_read, staged.valid_path, staged.quarantine_path) == (0, None, None)
        return
    assert staged.quarantine_path is not None
    quarantine = pl.read_parquet(staged.quarantine_path)
    if case.rejected is not None:
        _assert_rejected(case, staged, quarantine)
    else:
        _assert_ingested(case, staged, quarantine)


def _assert_rejected(case: Case, staged: StagedFile, quarantine: pl.DataFrame) -> None:
    assert staged.status == REJECTED, staged
    assert staged.reason is not None
    assert staged.reason.startswith(f"{case.rejected}: "), staged.reason
    assert (staged.rows_read, staged.rows_valid, staged.rows_quarantined) == (0, 0, 0)
    assert staged.valid_path is None
    assert quarantine.height == 1
    row = quarantine.row(0, named=True)
    assert row["row_number"] is None
    assert row["reason_codes"] == f"file:{case.rejected}"
    assert row["source_file"] == case.path
    assert row["sha256"] == staged.landed.sha256


def _assert_ingested(case: Case, staged: StagedFile, quarantine: pl.DataFrame) -> None:
    assert staged.status == INGESTED, staged.reason
    assert staged.reason is None
    found = set(quarantine.select("row_number", "reason_codes").iter_rows())
    assert found == set(case.quarantined)
    assert staged.rows_quarantined == quarantine.height == len(case.quarantined)
    assert staged.rows_valid == case.valid
    assert staged.valid_path is not None
    valid = pl.read_parquet(staged.valid_path)
    assert valid.height == case.valid
    assert quarantine["row_number"].null_count() == 0
    assert quarantine["raw_record"].null_count() == 0
    assert quarantine["reason_detail"].null_count() == 0
    assert (quarantine["source_file"] == case.path).all()
