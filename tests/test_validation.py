"""Row-level validation (SPEC §3): each rule of §1.3/§1.4 as a GX expectation, failures per row.

Frames are literal and tiny; Great Expectations is imported once for the module (it is slow).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from servio.schemas.catalog import Item, ItemCatalog, load_catalog
from servio.schemas.raw import FAILURE_SCHEMA, INTERACTIONS_RAW, RawContract, surveys_raw
from servio.schemas.suites import build_suite, default_contracts, load_suite, suite_json, suite_path
from servio.schemas.table import MONEY, TIMESTAMP
from servio.validation import batch, gx
from servio.validation.datadocs import render as build_data_docs
from servio.validation.gx import validate_rows
from servio.validation.results import ValidationResult, write_gx_result

INGESTED_AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
JAN = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
SMALL_CATALOG = ItemCatalog(
    (Item("tan1", "tangibles", "functional"), Item("rel1", "reliability", "technical"))
)
SMALL_SURVEYS = surveys_raw(SMALL_CATALOG)

KIND_DTYPES: dict[str, pl.DataType] = {
    "id": pl.String(),
    "string": pl.String(),
    "currency": pl.String(),
    "timestamp": TIMESTAMP,
    "number": pl.Float64(),
    "integer": pl.Int64(),
    "boolean": pl.Boolean(),
    "decimal": MONEY,
}


@pytest.fixture(scope="module", autouse=True)
def gx_context() -> None:
    """Import GX and build the shared ephemeral context once for the module."""
    gx.load()


def standardised(contract: RawContract, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A frame as the standardisation step makes it: source_row 1.., every contract column typed."""
    schema = {"source_row": pl.Int64(), **{f.name: KIND_DTYPES[f.kind] for f in contract.fields}}
    numbered = [{"source_row": number, **row} for number, row in enumerate(rows, start=1)]
    return pl.DataFrame(numbered, schema=schema)


def interaction(number: int, **changes: Any) -> dict[str, Any]:
    row = {
        "interaction_id": f"I{number}",
        "customer_id": f"C{number}",
        "channel": "phone",
        "started_at": JAN + timedelta(hours=number),
        "handle_seconds": 300.0,
        "queue_seconds": 20.0,
        "resolved": True,
        "reason": "billing",
        "revenue": Decimal("19.99"),
        "currency": "EUR",
    }
    return {**row, **changes}


def survey(number: int, **changes: Any) -> dict[str, Any]:
    row = {
        "response_id": f"R{number}",
        "customer_id": f"C{number}",
        "submitted_at": JAN + timedelta(hours=number),
        "exp_tan1": 6,
        "perc_tan1": 5,
        "nps": 8,
    }
    return {**row, **changes}


def validate(
    frame: pl.DataFrame,
    contract: RawContract = INTERACTIONS_RAW,
    *,
    currency: str = "EUR",
    ingested_at: datetime = INGESTED_AT,
    file_label: str = "interactions/2026-11-27.csv",
) -> ValidationResult:
    return validate_rows(
        frame, contract, currency=currency, ingested_at=ingested_at, file_label=file_label
    )


def reasons(result: ValidationResult) -> list[tuple[int, str]]:
    return [(row, code) for row, code, _ in result.failures.iter_rows()]


# ---------------------------------------------------------------------------------------
# one rule at a time


def test_clean_frame_has_no_failures() -> None:
    result = validate(standardised(INTERACTIONS_RAW, [interaction(1), interaction(2)]))

    assert result.failures.is_empty()
    assert result.failures.schema == FAILURE_SCHEMA
    assert result.summary["success"].all()
    assert result.gx_result.success


# One row per rule, each breaking only that rule; row 1 and the last row are clean.
ONE_RULE_PER_ROW: list[tuple[dict[str, Any], str, str]] = [
    ({"interaction_id": None}, "required:interaction_id", "interaction_id is required, got null"),
    ({"customer_id": None}, "required:customer_id", "customer_id is required, got null"),
    ({"channel": None}, "required:channel", "channel is required, got null"),
    ({"started_at": None}, "required:started_at", "started_at is required, got null"),
    ({"handle_seconds": None}, "required:handle_seconds", "handle_seconds is required, got null"),
    ({"resolved": None}, "required:resolved", "resolved is required, got null"),
    (
        {"customer_id": "C" * 65},
        "length:customer_id",
        "customer_id must be at most 64 characters, got 65 characters: 'CCCC",
    ),
    (
        {"channel": "fax"},
        "allowed:channel",
        "channel must be one of phone, chat, email, visit, web, got 'fax'",
    ),
    (
        {"handle_seconds": -5.0},
        "range:handle_seconds",
        "handle_seconds must be between 0 and 86400, got -5",
    ),
    ({"queue_seconds": 604_800.5}, "range:queue_seconds", "got 604800.5"),
    ({"handle_seconds": float("nan")}, "range:handle_seconds", "got NaN"),
    ({"queue_seconds": float("-inf")}, "range:queue_seconds", "between 0 and 604800, got -inf"),
    ({"revenue": Decimal("1000000000.01")}, "range:revenue", "got 1000000000.01"),
    ({"margin": Decimal("-1000000000.01")}, "range:margin", "got -1000000000.01"),
    (
        {"currency": "USD"},
        "currency:currency",
        "currency must be the reporting currency (EUR), got 'USD'",
    ),
    (
        {"started_at": datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)},
        "too_old:started_at",
        "started_at must not be before 2000-01-01T00:00:00Z, got 1999-12-31T23:59:59Z",
    ),
    (
        {"updated_at": datetime(2027, 1, 1, tzinfo=UTC)},
        "future:updated_at",
        "updated_at must not be after the ingestion time + 1 day (2026-11-28T12:00:00Z), "
        "got 2027-01-01T00:00:00Z",
    ),
]


@pytest.fixture(scope="module")
def one_rule_per_row() -> ValidationResult:
    broken = [interaction(n, **changes) for n, (changes, _, _) in enumerate(ONE_RULE_PER_ROW, 2)]
    rows = [interaction(1), *broken, interaction(len(ONE_RULE_PER_ROW) + 2)]
    return validate(standardised(INTERACTIONS_RAW, rows))


@pytest.mark.parametrize(
    ("row", "reason_code", "detail"),
    [(n, code, detail) for n, (_, code, detail) in enumerate(ONE_RULE_PER_ROW, 2)],
    ids=[f"{code}:{changes}" for changes, code, _ in ONE_RULE_PER_ROW],
)
def test_each_rule_fires_on_its_row_only(
    one_rule_per_row: ValidationResult, row: int, reason_code: str, detail: str
) -> None:
    on_row = one_rule_per_row.failures.filter(pl.col("source_row") == row)

    assert on_row["reason_code"].to_list() == [reason_code]
    assert detail in on_row["detail"][0]


def test_rows_breaking_no_rule_have_no_failures(one_rule_per_row: ValidationResult) -> None:
    assert one_rule_per_row.failed_rows.to_list() == list(range(2, len(ONE_RULE_PER_ROW) + 2))


@pytest.mark.parametrize("width", [1, 2, 5])
def test_columns_read_in_groups_give_the_same_result(
    one_rule_per_row: ValidationResult, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    """The batch's columns are read a group at a time (`batch.READ_CELLS` values): any group
    size finds the same failures and counts."""
    broken = [interaction(n, **changes) for n, (changes, _, _) in enumerate(ONE_RULE_PER_ROW, 2)]
    rows = [interaction(1), *broken, interaction(len(ONE_RULE_PER_ROW) + 2)]
    monkeypatch.setattr(batch, "READ_CELLS", width * len(rows))

    result = validate(standardised(INTERACTIONS_RAW, rows))

    assert result.failures.equals(one_rule_per_row.failures)
    assert result.summary.equals(one_rule_per_row.summary)


def test_read_groups_start_with_one_column_and_keep_derived_columns_alone() -> None:
    fields = {f.name: f for f in INTERACTIONS_RAW.fields}
    columns = [
        "interaction_id",
        "customer_id",
        "channel",
        "started_at",
        "_is_conflicting_duplicate",
    ]
    frame = standardised(INTERACTIONS_RAW, [interaction(n) for n in range(1, 11)]).lazy()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch, "READ_CELLS", 20)  # two columns of 10 rows
        groups = batch.read_groups(frame, columns, fields)

    assert groups == [
        ["interaction_id"],
        ["customer_id", "channel"],
        ["started_at"],
        ["_is_conflicting_duplicate"],
    ]


def test_gx_configurations_are_memoised_only_while_servio_validates() -> None:
    from great_expectations.expectations.expectation import Expectation

    before = Expectation.__dict__["configuration"]
    validate(standardised(INTERACTIONS_RAW, [interaction(1, channel="fax")]))

    assert Expectation.__dict__["configuration"] is before


LOADED_AFTER_GX = """
import sys
from servio.validation import gx
gx.load()
assert type(sys.modules["scipy.stats"]).__name__ == "_LazyModule"  # GX did not execute it
assert not any(isinstance(finder, gx._GxImportFinder) for finder in sys.meta_path)
import altair, boto3, scipy.stats, sqlalchemy  # each hidden or lazy while GX was imported
print(scipy.stats.norm.cdf(0.0), altair.Chart.__name__, boto3.__name__, sqlalchemy.__name__)
"""


HIDDEN_ON_ITS_THREAD = """
import sys, threading
from servio.validation import gx
imported = []
with gx._importing_gx():
    try:
        import sqlalchemy
    except ImportError as exc:
        imported.append(f"main:{type(exc).__name__}")
    other = threading.Thread(target=lambda: imported.append(__import__("sqlalchemy").__name__))
    other.start()
    other.join()
print(*imported)
"""


def test_packages_are_hidden_from_gx_import_only_on_the_importing_thread() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HIDDEN_ON_ITS_THREAD], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["main:ModuleNotFoundError", "sqlalchemy"]


def test_packages_hidden_or_lazy_while_gx_loads_work_afterwards() -> None:
    """GX's import hides some packages and defers others (`gx._importing_gx`); once it is
    imported, the process imports and uses each of them as if GX had not been there."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED_AFTER_GX], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.5", "Chart", "boto3", "sqlalchemy"]


LOADED_IN_BACKGROUND = """
import threading
from servio.validation import gx
real, threads = gx._loadload, []

def failing_once():
    threads.append(threading.current_thread().name)
    if len(threads) == 1:
        raise RuntimeError("the first load fails")
    return real()

gx._loadload = failing_once
gx.load_in_background()
gx.load_in_background()  # once per process
gx._loading.join()
loaded = gx.load()  # the background load failed: this one loads
gx.load_in_background()  # loaded: nothing to start
print(threads, gx.load() is loaded, threading.active_count())
"""


def test_gx_loads_in_the_background_once_and_a_failure_leaves_it_to_load() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOADED_IN_BACKGROUND], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['servio-gx-load',", "'MainThread']", "True", "1"]


def test_empty_file_has_no_failures() -> None:
    result = validate(standardised(INTERACTIONS_RAW, []))

    assert result.failures.is_empty()
    assert result.summary["success"].all()


def test_value_rules_ignore_nulls_of_optional_columns() -> None:
    row = interaction(1, queue_seconds=None, revenue=None, currency=None, reason=None)

    result = validate(standardised(INTERACTIONS_RAW, [row]))

    assert result.failures.is_empty()


def test_a_row_breaking_several_rules_reports_them_all() -> None:
    bad = interaction(2, customer_id=None, channel="fax", handle_seconds=-1.0, currency="GBP")
    frame = standardised(INTERACTIONS_RAW, [interaction(1), bad])

    result = validate(frame)

    assert reasons(result) == [
        (2, "required:customer_id"),
        (2, "allowed:channel"),
        (2, "range:handle_seconds"),
        (2, "currency:currency"),
    ]
    assert result.failed_rows.to_list() == [2]


def test_a_required_column_left_empty_fails_every_row() -> None:
    rows = [interaction(1, customer_id=None), interaction(2, customer_id=None)]

    result = validate(standardised(INTERACTIONS_RAW, rows))

    assert reasons(result) == [(1, "required:customer_id"), (2, "required:customer_id")]


def test_summary_counts_failures_per_expectation() -> None:
    rows = [interaction(1, channel="fax"), interaction(2, channel="fax"), interaction(3)]

    summary = validate(standardised(INTERACTIONS_RAW, rows)).summary

    channel = summary.filter(pl.col("reason_code") == "allowed:channel").row(0, named=True)
    assert channel["expectation_type"] == "expect_column_values_to_be_in_set"
    assert channel["column"] == "channel"
    assert (channel["success"], channel["unexpected_count"]) == (False, 2)
    assert summary.height == len(load_suite(INTERACTIONS_RAW)["expectations"])


# ---------------------------------------------------------------------------------------
# runtime parameters


def test_currency_is_checked_against_the_configured_reporting_currency() -> None:
    frame = standardised(INTERACTIONS_RAW, [interaction(1, currency="USD"), interaction(2)])

    result = validate(frame, currency="USD")

    assert reasons(result) == [(2, "currency:currency")]
    assert "(USD), got 'EUR'" in result.failures["detail"][0]


def test_future_bound_is_ingestion_time_plus_one_day() -> None:
    limit = INGESTED_AT + timedelta(days=1)
    rows = [
        interaction(1, started_at=limit),
        interaction(2, started_at=limit + timedelta(microseconds=1)),
    ]
    frame = standardised(INTERACTIONS_RAW, rows)

    assert reasons(validate(frame)) == [(2, "future:started_at")]
    assert validate(frame, ingested_at=INGESTED_AT + timedelta(hours=1)).failures.is_empty()


def test_naive_ingestion_time_is_refused() -> None:
    frame = standardised(INTERACTIONS_RAW, [interaction(1)])

    with pytest.raises(ValueError, match="timezone-aware"):
        validate(frame, ingested_at=datetime(2026, 11, 27, 12))


def test_missing_contract_column_is_refused() -> None:
    frame = standardised(INTERACTIONS_RAW, [interaction(1)]).drop("channel")

    with pytest.raises(ValueError, match=r"lacks column.*channel"):
        validate(frame)


# ---------------------------------------------------------------------------------------
# duplicates within a file


def test_exact_duplicate_rows_are_not_failures() -> None:
    frame = standardised(INTERACTIONS_RAW, [interaction(1), interaction(1), interaction(2)])

    assert validate(frame).failures.is_empty()


def test_conflicting_duplicates_flag_every_row_of_the_group() -> None:
    rows = [interaction(1), interaction(2), interaction(1, handle_seconds=999.0)]

    result = validate(standardised(INTERACTIONS_RAW, rows))

    assert reasons(result) == [
        (1, "conflicting_duplicate:interaction_id"),
        (3, "conflicting_duplicate:interaction_id"),
    ]
    assert (
        "interaction_id 'I1' at 2026-01-15T10:30:00Z has differing rows 1, 3"
        in (result.failures["detail"][0])
    )


def test_versions_of_one_key_are_not_duplicates() -> None:
    rows = [
        interaction(1, updated_at=JAN + timedelta(days=1)),
        interaction(1, updated_at=JAN + timedelta(days=2), resolved=False),
    ]

    assert validate(standardised(INTERACTIONS_RAW, rows)).failures.is_empty()


def test_version_time_falls_back_to_started_at_when_updated_at_is_null() -> None:
    same_start = JAN + timedelta(hours=1)
    rows = [
        interaction(1, updated_at=None),
        interaction(1, updated_at=same_start, resolved=False),
        interaction(2),
    ]

    result = validate(standardised(INTERACTIONS_RAW, rows))

    assert reasons(result) == [
        (1, "conflicting_duplicate:interaction_id"),
        (2, "conflicting_duplicate:interaction_id"),
    ]


# ---------------------------------------------------------------------------------------
# surveys


def survey_reasons(rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
    frame = standardised(SMALL_SURVEYS, rows)
    return reasons(validate(frame, SMALL_SURVEYS, file_label="surveys/2026-11-27.csv"))


def test_survey_without_perception_or_score_is_no_answer() -> None:
    unanswered = survey(2, perc_tan1=None, nps=None, exp_rel1=4)

    assert survey_reasons([survey(1), unanswered]) == [(2, "no_answer")]


def test_perception_only_survey_is_answered() -> None:
    servperf = survey(1, exp_tan1=None, nps=None, perc_rel1=6)

    assert survey_reasons([servperf]) == []


def test_nps_only_survey_is_answered() -> None:
    nps_only = survey(1, exp_tan1=None, perc_tan1=None, nps=10)

    assert survey_reasons([nps_only]) == []


def test_survey_answer_out_of_scale_quarantines_the_row() -> None:
    rows = [survey(1, perc_tan1=8), survey(2, nps=11), survey(3, ces=0)]

    assert survey_reasons(rows) == [(1, "range:perc_tan1"), (2, "range:nps"), (3, "range:ces")]


def test_committed_survey_suite_validates_the_default_catalog() -> None:
    contract = surveys_raw(load_catalog())
    frame = standardised(contract, [survey(1), survey(2, perc_emp5=0, nps=None, perc_tan1=None)])

    result = validate(frame, contract, file_label="surveys/default.csv")

    assert reasons(result) == [(2, "range:perc_emp5")]
    assert result.summary.height == len(
        json.loads(suite_path(contract).read_text())["expectations"]
    )


# ---------------------------------------------------------------------------------------
# the suites as data


@pytest.mark.parametrize("contract", default_contracts(), ids=lambda c: c.source)
def test_committed_suite_equals_the_generated_one(contract: RawContract) -> None:
    committed = suite_path(contract).read_text(encoding="utf-8")

    assert committed == suite_json(contract), "regenerate with: python -m servio.schemas.suites"


@pytest.mark.parametrize("contract", default_contracts(), ids=lambda c: c.source)
def test_committed_suite_loads_into_great_expectations(contract: RawContract) -> None:
    great_expectations = gx.load().gx
    document = json.loads(suite_path(contract).read_text(encoding="utf-8"))

    suite = great_expectations.ExpectationSuite(**document)

    assert len(suite.expectations) == len(document["expectations"])
    codes = [e["meta"]["reason_code"] for e in document["expectations"]]
    assert len(codes) == len(set(codes)), "one expectation per reason code"


def test_suite_of_another_catalog_is_built_from_its_contract() -> None:
    assert load_suite(SMALL_SURVEYS) == build_suite(SMALL_SURVEYS)


# ---------------------------------------------------------------------------------------
# Data Docs

DAY = timedelta(days=1)


def test_data_docs_index_mentions_every_validated_file(tmp_path: Path) -> None:
    first = validate(
        standardised(INTERACTIONS_RAW, [interaction(1, channel="fax")]),
        file_label="interactions/monday.csv",
    )
    second = validate(
        standardised(SMALL_SURVEYS, [survey(1)]),
        SMALL_SURVEYS,
        file_label="surveys/monday.csv",
        ingested_at=INGESTED_AT + timedelta(minutes=1),
    )

    index = build_data_docs([first, second], tmp_path / "docs")

    assert index == tmp_path / "docs" / "index.html"
    text = index.read_text(encoding="utf-8")
    assert "interactions/monday.csv" in text
    assert "surveys/monday.csv" in text
    pages = list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert len(pages) == 2


def test_data_docs_keep_earlier_runs_in_the_same_directory(tmp_path: Path) -> None:
    frame = standardised(INTERACTIONS_RAW, [interaction(1)])
    build_data_docs([validate(frame, file_label="interactions/a.csv")], tmp_path)

    later = INGESTED_AT + timedelta(days=1)
    index = build_data_docs(
        [validate(frame, file_label="interactions/profiling_b.csv", ingested_at=later)], tmp_path
    )

    text = index.read_text(encoding="utf-8")
    assert "interactions/a.csv" in text
    assert "interactions/profiling_b.csv" in text  # GX would file it under profiling


def test_data_docs_render_only_new_results_and_missing_pages(tmp_path: Path) -> None:
    """A run renders its own files' pages (and any page gone missing), not every page of
    every run before it again; the index still lists every file."""
    frame = standardised(INTERACTIONS_RAW, [interaction(1)])
    build_data_docs([validate(frame, file_label="interactions/a.csv")], tmp_path)
    build_data_docs(
        [validate(frame, file_label="interactions/b.csv", ingested_at=INGESTED_AT + DAY)],
        tmp_path,
    )
    pages = {p.parent.parent.name: p for p in (tmp_path / "validations").rglob("*.html")}
    assert len(pages) == 2
    for page in pages.values():  # stamp both pages: a page rendered again loses the stamp
        page.write_text(page.read_text(encoding="utf-8") + "<!-- kept -->", encoding="utf-8")
    [first_page] = [p for p in pages.values() if "a.csv" in p.read_text(encoding="utf-8")]
    [second_page] = [p for p in pages.values() if p != first_page]
    second_page.unlink()

    index = build_data_docs(
        [validate(frame, file_label="interactions/c.csv", ingested_at=INGESTED_AT + 2 * DAY)],
        tmp_path,
    )

    assert first_page.read_text(encoding="utf-8").endswith("<!-- kept -->")  # not rendered again
    assert second_page.exists()  # missing: rendered again
    assert not second_page.read_text(encoding="utf-8").endswith("<!-- kept -->")
    assert len(list((tmp_path / "validations").rglob("*.html"))) == 3
    text = index.read_text(encoding="utf-8")
    assert all(f"interactions/{name}.csv" in text for name in "abc")


def test_data_docs_render_a_result_saved_as_json(tmp_path: Path) -> None:
    frame = standardised(INTERACTIONS_RAW, [interaction(1, channel="fax")])
    saved = write_gx_result(
        validate(frame, file_label="interactions/saved.csv"), tmp_path / "r.json"
    )

    index = build_data_docs([saved], tmp_path / "docs")

    assert "interactions/saved.csv" in index.read_text(encoding="utf-8")
    (page,) = (tmp_path / "docs" / "validations").rglob("*.html")
    assert "values must belong to this set" in page.read_text(encoding="utf-8")


def test_the_offline_index_counts_pass_and_fail_per_file_and_per_expectation(
    tmp_path: Path,
) -> None:
    from servio.validation.datadocs import offline_index

    failing = validate(
        standardised(
            INTERACTIONS_RAW, [interaction(1, channel="fax"), interaction(2, channel="fax")]
        ),
        file_label="interactions/<b>fax</b>.csv",
    )
    passing = validate(
        standardised(INTERACTIONS_RAW, [interaction(3)]),
        file_label="interactions/clean.csv",
        ingested_at=INGESTED_AT + timedelta(minutes=1),
    )
    docs = tmp_path / "docs"
    index = offline_index(build_data_docs([failing, passing], docs), docs / "offline.html")
    text = index.read_text(encoding="utf-8")
    assert "2 validated file(s): 1 with at least one failed" in " ".join(text.split())
    assert "&lt;b&gt;fax&lt;/b&gt;" in text and "<b>fax</b>" not in text  # escaped
    assert "http://" not in text.replace('href="index.html"', "") and "<script" not in text
    rows = re.findall(r"<tr>\s*(.*?)</tr>", text, re.DOTALL)
    channel = [r for r in rows if ">channel<" in r and "expect_column_values_to_be_in_set" in r]
    [channel_row] = channel
    cells = re.findall(r"<td[^>]*>(.*?)</td>", channel_row)
    assert cells[-3:] == ["1", "1", "2"]  # files passed, failed; unexpected values
    links = re.findall(r'<a href="(validations/[^"]+)">', text)
    assert len(links) == 2 and all((docs / link).is_file() for link in links)
    evaluated = len(failing.summary)
    fax_row = next(r for r in rows if "fax" in r and "validations/" in r)
    fax_cells = re.findall(r"<td[^>]*>(.*?)</td>", fax_row)
    failed = int(fax_cells[-2])
    assert fax_cells[3] == "fail" and failed >= 1
    assert int(fax_cells[-3]) + failed == evaluated
