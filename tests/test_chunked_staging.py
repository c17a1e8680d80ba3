"""Staging in chunks gives exactly the tables of staging each file whole (issue #11).

A tiny chunk size (7 rows) splits every file into several parts; rules that span rows (a
conflicting duplicate whose two rows sit in different chunks), a newer version moving a key
to another date partition, and the per-file Great Expectations result must come out as
in a one-chunk run: curated tables, quarantine and ledger row for row.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from servio.config import load_settings
from servio.lake.lake import Lake
from servio.raw import landing
from servio.schemas.tables import REJECTED
from servio.steps.context import STAGE_CHUNK_ROWS, RunContext
from servio.steps.stage import stage_file
from servio.steps.staging import StagedFile
from servio.tools.generate import GenerateOptions, generate
from servio.validation.gx import GxValidator
from tests import faults_harness as h
from tests.runs import REQUIRED_ONLY, run

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e

TINY_CHUNK = 7
INTERACTIONS_HEADER = (
    "interaction_id,customer_id,channel,started_at,handle_seconds,queue_seconds,resolved,"
    "reason,revenue,margin,currency,agent_id,updated_at\n"
)
# 20 records: chunks are rows 1-7, 8-14, 15-20.
FIRST_EXPORT = [
    "i1,c1,phone,2026-01-05T10:00:00Z,300,,yes,billing,10.00,,EUR,a1,",  # conflicts with 10
    "i2,c1,chat,2026-01-05T11:00:00Z,120,5,no,order,,,,,",
    "i3,c2,fax,2026-01-05T12:00:00Z,60,,yes,,,,,,",  # channel not allowed
    "i4,c2,email,2026-01-06T09:00:00Z,-5,,yes,,,,,,",  # handle_seconds out of range
    "i5,c3,web,not-a-date,60,,no,,,,,,",  # unparseable timestamp
    ",c3,phone,2026-01-06T09:00:00Z,60,,no,,,,,,",  # no id
    "i7,c4,visit,2026-01-07T09:00:00Z,600,,y,complaint,-20.00,,EUR,a2,2026-01-07T12:00:00Z",
    "i8,c4,phone,2026-01-08T09:00:00Z,100,,n,,,,USD,,",  # not the reporting currency
    "i2,c1,chat,2026-01-05T11:00:00Z,120,5,no,order,,,,,",  # same content as 2: no conflict
    "i1,c1,phone,2026-01-05T10:00:00Z,999,,yes,billing,10.00,,EUR,a1,",  # conflicts with 1
    "i11,c5,phone,2026-01-09T09:00:00Z,100,,true,info,5.555,,EUR,,",
    "i12,c5,chat,2026-01-09T10:00:00Z,abc,,true,,,,,,",  # handle_seconds not a number
    # a newer version of i7 (row 7), another day: i7 moves partition within one file
    "i7,c4,visit,2026-01-10T09:00:00Z,650,,y,complaint,-20.00,,EUR,a2,2026-01-10T12:00:00Z",
    "i14,c6,web,2026-01-10T09:00:00Z,0,,false,,,,,,",
    "i15,c6,email,2026-01-11T09:00:00Z,30,,maybe,,,,,,",  # not a boolean
    "i16,c7,phone,2026-01-11T09:00:00Z,30,,1,,,,,,",
    "i17,c7,phone,2026-01-12T09:00:00Z,30,700000,1,,,,,,",  # queue_seconds out of range
    "i18,c8,phone,2026-01-12T09:00:00Z,30,,0,,,,,,",
    "i19,c8,chat,2026-01-13T09:00:00Z,30,,0,,,,,,",
    "i20,c9,visit,2026-01-13T09:00:00Z,30,,0,,,,,,",
]
REEXPORT = [
    # i16 moves from 2026-01-11 (whose partition is left empty) to 2026-02-01
    "i16,c7,phone,2026-02-01T09:00:00Z,45,,1,,,,,,2026-02-01T10:00:00Z",
    "i18,c8,phone,2026-01-12T09:00:00Z,31,,0,,,,,,2026-01-01T00:00:00Z",  # older: loses
    "i2,c1,chat,2026-01-05T11:00:00Z,125,5,yes,order,,,,,2026-01-20T00:00:00Z",
]
SURVEYS = (
    "response_id,customer_id,interaction_id,submitted_at,perc_rel1,exp_rel1,nps,csat,ces\n"
    "r1,c1,i1,2026-01-05T12:00:00Z,6,5,9,,\n"
    "r2,c2,,2026-01-06T12:00:00Z,,,,4,\n"
    "r3,c3,,2026-01-06T13:00:00Z,,,,,\n"  # no answer
    "r4,c4,,2026-01-07T13:00:00Z,8,,,,\n"  # perception out of range
    "r5,c5,,2026-01-07T14:00:00Z,5,5,,,\n"
    "r6,c6,,2026-01-08T14:00:00Z,,,11,,\n"  # nps out of range
    "r7,c7,,2026-01-08T15:00:00Z,4,,,,\n"
    "r1,c1,i1,2026-01-05T12:00:00Z,7,5,9,,\n"  # conflicts with row 1, another chunk
    "r9,c9,,2026-01-09T15:00:00Z,3,3,,,\n"
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _lake(base: Path) -> Path:
    _write(
        base / "raw" / "interactions" / "2026-01_a.csv", INTERACTIONS_HEADER + _lines(FIRST_EXPORT)
    )
    _write(base / "raw" / "surveys" / "2026-01.csv", SURVEYS)
    return h.new_lake(base, [], base, None)


def _assert_same_tables(actual: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame]) -> None:
    assert actual.keys() == expected.keys()
    for name, frame in expected.items():
        try:
            assert_frame_equal(actual[name], frame)
        except AssertionError as exc:
            raise AssertionError(f"table {name} differs from the one-chunk run: {exc}") from exc


def _lines(rows: list[str]) -> str:
    return "".join(row + "\n" for row in rows)


def _two_runs(
    base: Path, chunk_rows: int = STAGE_CHUNK_ROWS
) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    """Ingest the first exports, then the re-export; the tables after each run."""
    config = _lake(base)
    run(config, chunk_rows=chunk_rows)
    after_first = h.tables(config)
    _write(base / "raw" / "interactions" / "2026-02_b.csv", INTERACTIONS_HEADER + _lines(REEXPORT))
    run(config, chunk_rows=chunk_rows)
    return after_first, h.tables(config)


@pytest.fixture(scope="module")
def one_chunk(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    return _two_runs(tmp_path_factory.mktemp("one-chunk"))


def test_tiny_chunks_give_the_tables_of_one_chunk(
    one_chunk: tuple[dict, dict], tmp_path: Path
) -> None:
    after_first, final = _two_runs(tmp_path, TINY_CHUNK)
    for expected, actual in ((one_chunk[0], after_first), (one_chunk[1], final)):
        _assert_same_tables(actual, expected)


def test_a_wide_contract_is_staged_in_fewer_rows(
    one_chunk: tuple[dict, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk is bounded in fields (rows × the contract's fields) as well as in rows: at
    153 fields a chunk holds 3 surveys (51 fields) or 11 interactions (13), and the tables
    are those of one chunk."""
    from servio.steps import context, read

    monkeypatch.setattr(context, "STAGE_CHUNK_FIELDS", 3 * 51)
    asked: list[tuple[str, int]] = []
    reading = read.landing.read_raw_chunks

    def read_raw_chunks(landed: landing.LandedFile, chunk_rows: int, columns: object) -> object:
        asked.append((landed.source, chunk_rows))
        return reading(landed, chunk_rows, columns)  # type: ignore[arg-type]

    monkeypatch.setattr(read.landing, "read_raw_chunks", read_raw_chunks)
    after_first, final = _two_runs(tmp_path)
    assert sorted(set(asked)) == [("interactions", 11), ("surveys", 3)]
    for expected, actual in ((one_chunk[0], after_first), (one_chunk[1], final)):
        _assert_same_tables(actual, expected)


def test_the_reference_run_sees_what_the_chunks_must_reproduce(one_chunk: tuple) -> None:
    """Guards the comparison above: the cross-chunk cases are really in the data."""
    _, final = one_chunk
    quarantine = final["quarantine"]
    conflicts = quarantine.filter(pl.col("reason_codes").str.contains("conflicting_duplicate"))
    assert sorted(conflicts.select("source_file", "row_number").rows()) == [
        ("interactions/2026-01_a.csv", 1),
        ("interactions/2026-01_a.csv", 10),
        ("surveys/2026-01.csv", 1),
        ("surveys/2026-01.csv", 8),
    ]
    interactions = final["interactions"]
    moved = dict(interactions.select("interaction_id", "interaction_date").rows())
    assert moved["i16"] == date(2026, 2, 1)  # re-exported into another partition
    assert moved["i7"] == date(2026, 1, 10)  # newer version later in the same file
    assert date(2026, 1, 11) not in set(interactions["interaction_date"])
    assert interactions.filter(pl.col("interaction_id") == "i18")["handle_seconds"].item() == 30
    ledger = final["ingest_ledger"].sort("source_seq")
    assert ledger.select("rows_read", "rows_valid", "rows_quarantined").rows() == [
        (20, 10, 10),
        (9, 4, 5),
        (3, 3, 0),
    ]
    assert ledger.select("rows_curated", "rows_superseded").rows() == [(6, 4), (4, 0), (2, 1)]


def test_chunk_results_combine_into_the_files_gx_result(tmp_path: Path) -> None:
    """The Data Docs result of a file staged in chunks has the counts and (trimmed) row ids
    of the file staged whole."""
    config = _lake(tmp_path)
    settings = load_settings(str(config))
    lake = Lake(settings.curated_root)
    [landed] = [f for f in landing.discover(Path(settings.raw_root)) if f.source == "interactions"]
    ingested_at = datetime(2026, 2, 2, tzinfo=UTC)

    def gx_result(run_id: str, chunk_rows: int = STAGE_CHUNK_ROWS) -> dict:
        ctx = RunContext(settings, lake, run_id, GxValidator(), started_at=ingested_at)
        staged = stage_file(replace(ctx, chunk_rows=chunk_rows), landed)
        assert staged.validation_path is not None
        document = json.loads(Path(staged.validation_path).read_text())
        return {
            "statistics": document["statistics"],
            "success": document["success"],
            "results": [
                (r["expectation_config"]["type"], r["success"], r["result"])
                for r in document["results"]
            ],
        }

    whole = gx_result("whole")
    chunked = gx_result("chunked", TINY_CHUNK)
    assert chunked == whole
    assert whole["statistics"]["unsuccessful_expectations"] == 9


def test_tiny_chunks_of_every_format_give_the_tables_of_one_chunk(tmp_path: Path) -> None:
    """Generated messy exports (csv, csv.gz, jsonl, parquet; re-exports) at a chunk of 7."""
    exports = tmp_path / "exports"
    options = GenerateOptions(
        customers=12,
        days=10,
        seed=5,
        messiness=0.1,
        end_date=date(2026, 11, 20),
        formats=("csv", "csv.gz", "jsonl", "parquet"),
    )
    generate(exports, options)
    files = sorted(p for p in exports.rglob("*") if p.is_file() and not p.name.startswith("_"))
    results = []
    for chunk in (STAGE_CHUNK_ROWS, TINY_CHUNK):
        config = h.new_lake(tmp_path / f"chunk-{chunk}", files, exports, None)
        run(config, REQUIRED_ONLY, chunk_rows=chunk)  # GX is slow
        results.append(h.tables(config))
    whole, chunked = results
    assert whole["interactions"].height > 3 * TINY_CHUNK
    _assert_same_tables(chunked, whole)


def test_a_file_malformed_in_a_late_chunk_is_rejected_whole(tmp_path: Path) -> None:
    """An unterminated quote in the third chunk: no part of the file stays staged."""
    broken = [
        *FIRST_EXPORT[:16],
        'i99,c9,phone,"2026-01-13T09:00:00Z,30,,0,,,,,,',
        *FIRST_EXPORT[16:],
    ]
    path = tmp_path / "raw" / "interactions" / "broken.csv"
    _write(path, INTERACTIONS_HEADER + _lines(broken))
    settings = load_settings(str(h.new_lake(tmp_path, [], tmp_path, None)))
    lake = Lake(settings.curated_root)
    [landed] = landing.discover(Path(settings.raw_root))
    ingested_at = datetime(2026, 2, 2, tzinfo=UTC)

    def staged_as(run_id: str, chunk_rows: int = STAGE_CHUNK_ROWS) -> tuple[StagedFile, list[str]]:
        ctx = RunContext(settings, lake, run_id, GxValidator(), started_at=ingested_at)
        staged = stage_file(replace(ctx, chunk_rows=chunk_rows), landed)
        folder = lake.staging_dir(run_id) / "files" / landed.sha256
        return staged, sorted(p.name for p in folder.iterdir())

    whole, whole_files = staged_as("whole")
    chunked, chunked_files = staged_as("chunked", TINY_CHUNK)
    assert whole.status == chunked.status == REJECTED
    assert chunked.reason == whole.reason
    assert (chunked.rows_read, chunked.valid_path) == (0, None)
    assert chunked_files == whole_files == ["quarantine.parquet"]
    assert chunked.quarantine_path is not None
    [row] = pl.read_parquet(chunked.quarantine_path).to_dicts()
    assert row["reason_codes"] == "file:malformed_csv"


def _staged_rows(staged: StagedFile) -> dict[str, object]:
    """What a staged file hands to the publish: counts, rows and the GX result."""
    valid = pl.read_parquet(staged.valid_path) if staged.valid_path else None
    quarantine = pl.read_parquet(staged.quarantine_path).drop("run_id", "quarantined_at")
    document = json.loads(Path(str(staged.validation_path)).read_text())
    return {
        "counts": (staged.status, staged.rows_read, staged.rows_valid, staged.rows_quarantined),
        "valid": valid.sort(pl.all()).rows() if valid is not None else None,
        "quarantine": quarantine.sort(pl.all()).rows(),
        "statistics": document["statistics"],
        "results": [
            (r["expectation_config"]["type"], r["success"], r["result"])
            for r in document["results"]
        ],
    }


@pytest.mark.parametrize("batch_rows", [1, 12, 1_000_000])
def test_files_checked_in_one_batch_get_what_each_gets_alone(
    batch_rows: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Great Expectations checks the files of a source together, in batches of up to
    `VALIDATION_BATCH_FIELDS` fields (several files in one batch, a file over several batches):
    each file's staged rows and GX result (counts, percentages, row ids) are those of the
    file staged alone — including a conflicting duplicate split over chunks."""
    from servio.steps import check, read

    base = tmp_path
    _write(base / "raw" / "interactions" / "a.csv", INTERACTIONS_HEADER + _lines(FIRST_EXPORT))
    _write(base / "raw" / "interactions" / "b.csv", INTERACTIONS_HEADER + _lines(REEXPORT))
    third = [row.replace("i", "k", 1) for row in FIRST_EXPORT[::-1]]  # other ids, other order
    _write(base / "raw" / "interactions" / "c.csv", INTERACTIONS_HEADER + _lines(third))
    _write(base / "raw" / "surveys" / "s.csv", SURVEYS)
    settings = load_settings(str(h.new_lake(base, [], base, None)))
    lake = Lake(settings.curated_root)
    files = sorted(landing.discover(Path(settings.raw_root)), key=lambda f: f.relative_path)
    ingested_at = datetime(2026, 2, 2, tzinfo=UTC)

    def context(run_id: str) -> RunContext:
        ctx = RunContext(settings, lake, run_id, GxValidator(), started_at=ingested_at)
        return replace(ctx, chunk_rows=TINY_CHUNK)

    alone = [_staged_rows(stage_file(context(f"alone-{i}"), f)) for i, f in enumerate(files)]
    # In fields: rows × the contract's fields (13 for interactions, 51 for surveys).
    monkeypatch.setattr(check, "VALIDATION_BATCH_FIELDS", batch_rows * 13)
    ctx = context("together")
    together = check.check_files(ctx, [read.read_file(ctx, f) for f in files])
    assert [_staged_rows(s) for s in together] == alone
    assert [s.landed.relative_path for s in together] == [f.relative_path for f in files]
    assert alone[0]["statistics"]["unsuccessful_expectations"] == 9
