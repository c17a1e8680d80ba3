"""Every file is isolated (issue #16): a generated corpus of hostile exports, run twice.

Each hypothesis example lands a few hostile files, drawn from the classes of the issue, beside
one clean export, and runs the main job's sequence (`servio.steps.sequence.run`, no Prefect, the GX suite
replaced by its `required` checks as in the kill tests) twice. For every file it asserts:

- its outcome (ingested, rejected, refused, deferred) and reason code;
- `rows_read = rows_valid + rows_quarantined`, against the quarantine rows and curated rows
  really written for that file (and the exact record count where the case knows it);
- the clean export of the same run was published;
- a personal-data marker planted in every personal-data and unknown column appears in no
  column of any curated table (ingest ledger and quarantine reasons included);
- the second run over the same corpus changes no table file and adds no ledger row.

Cases needing a change between runs (a misfiled export moved, a file deleted or rewritten
while read, an unreadable file, a panic inside a reader) are named tests below.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servio import faults
from servio.config import Settings, load_settings
from servio.lake.lake import Lake
from servio.raw import landing
from servio.schemas.tables import (
    DEFERRED,
    INGEST_LEDGER,
    INGESTED,
    REFUSED,
    REJECTED,
    curated_tables,
)
from tests import faults_harness as h
from tests.runs import REQUIRED_ONLY
from tests.runs import run as run_sequence

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e

MARKER = "PDMARK-q7Zx"  # planted in every personal-data and unknown column
PERSONAL = ("customer_name", "email", "phone", "notes", "comment")
# Names servio gives columns of its own, in a reader, standardise, validation or publish.
SERVIO_NAMES = (
    "source_row",
    "__malformed__",
    "__not_text__",
    "invalid_fields",
    "__typed__channel",
    "__failed__resolved",
    "_c0",
    "_c3",
    "_key_hash",
    "reason_code",
    "detail",
    "field",
    "value",
    "failed",
    "source_seq",
    "source_file",
    "run_id",
    "is_latest",
    "len",
)
COLUMNS = (
    "interaction_id",
    "customer_id",
    "channel",
    "started_at",
    "handle_seconds",
    "resolved",
    "revenue",
    "currency",
)


# ---------------------------------------------------------------------------------------
# building exports


def good_row(prefix: str, number: int) -> dict[str, str]:
    return {
        "interaction_id": f"{prefix}-{number}",
        "customer_id": f"C{number % 7}",
        "channel": ("phone", "chat", "email", "visit", "web")[number % 5],
        "started_at": f"2026-11-{10 + number % 10:02d}T10:{number % 60:02d}:00Z",
        "handle_seconds": str(30 + number),
        "resolved": ("true", "no", "1")[number % 3],
        "revenue": f"{number}.{number % 100:02d}",
        "currency": "EUR",
    }


def with_personal(row: dict[str, str], extra: list[str]) -> dict[str, str]:
    """The row with the marker in every personal-data column and in the `extra` columns."""
    return {**row, **dict.fromkeys(PERSONAL, f"{MARKER} secret"), **dict.fromkeys(extra, MARKER)}


def csv_text(header: list[str], rows: list[list[str]], newline: str = "\n") -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def parquet_bytes(columns: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class Hostile:
    """One hostile file and the outcome it must have."""

    kind: str
    path: str  # relative to the raw root
    data: bytes
    status: str
    code: str | None = None  # the reason code of a file not ingested
    records: int | None = None  # rows_read, when the case knows it
    link_outside: bool = False  # `data` goes outside the raw root, a link to it inside


# File names are data: glob characters and Rich markup must stay characters.
NAME_TAILS = ("", " [1]", " *", " ?", " [bold]x[/]", " {a,b}", " 顧客 😀")


def spelled(draw: st.DrawFn, name: str) -> str:
    return draw(st.sampled_from([name, name.upper(), name.title(), f" {name} "]))


@st.composite
def colliding_columns(draw: st.DrawFn, n: int) -> Hostile:
    """Unknown columns named like those servio adds (any case), in any format."""
    fmt = draw(st.sampled_from(["csv", "jsonl", "parquet", "csv.gz", "jsonl.gz"]))
    extra = draw(st.lists(st.sampled_from(SERVIO_NAMES), min_size=1, max_size=4, unique=True))
    extra = list(dict.fromkeys(spelled(draw, name) for name in extra))
    rows = [with_personal(good_row(f"col{n}", k), extra) for k in range(draw(st.integers(1, 6)))]
    header = [*COLUMNS, *PERSONAL, *extra]
    header = draw(st.permutations(header))
    if fmt.startswith("csv"):
        data = csv_text(header, [[r[c] for c in header] for r in rows]).encode()
    elif fmt.startswith("jsonl"):
        data = "".join(json.dumps({c: r[c] for c in header}) + "\n" for r in rows).encode()
    else:
        data = parquet_bytes({c: [r[c] for r in rows] for c in header})
    if fmt.endswith(".gz"):
        data = gzip.compress(data)
    return Hostile(
        "colliding_columns",
        f"interactions/collide {n}{draw(st.sampled_from(NAME_TAILS))}.{fmt}",
        data,
        INGESTED,
        records=len(rows),
    )


@st.composite
def line_ends_and_blank_lines(draw: st.DrawFn, n: int) -> Hostile:
    """Classic-Mac `\\r` files and files that mix `\\r`, `\\n` and `\\r\\n` line ends, blank
    lines and lines of empty fields (not records), an Excel header ending in `,,` and a
    repeated unknown column (ignored)."""
    ends = st.sampled_from(["\r", "\n", "\r\n"])
    newline = draw(ends)
    mixed = draw(st.booleans())
    count = draw(st.integers(1, 8))
    header = [*COLUMNS, "notes", "Notes", *[""] * draw(st.integers(0, 3))]
    lines = [
        [
            *(good_row(f"blank{n}", k)[c] for c in COLUMNS),
            MARKER,
            MARKER,
            *[""] * (len(header) - len(COLUMNS) - 2),
        ]
        for k in range(count)
    ]
    text = csv_text(header, lines, newline)
    parts = text.split(newline)
    for _ in range(draw(st.integers(0, 4))):  # blank lines and lines of empty fields
        at = draw(st.integers(1, len(parts) - 1))
        parts.insert(at, draw(st.sampled_from(["", ",,,", "," * (len(header) - 1)])))
    text = "".join(part + (draw(ends) if mixed else newline) for part in parts[:-1])
    data = (text + parts[-1]).encode()
    return Hostile(
        "line_ends_and_blank_lines",
        f"interactions/lines {n}{draw(st.sampled_from(NAME_TAILS))}.csv",
        data,
        INGESTED,
        records=count,
    )


@st.composite
def long_header(draw: st.DrawFn, n: int) -> Hostile:
    """A header field longer than Python's csv field limit (an unknown column)."""
    name = MARKER * (131_072 // len(MARKER) + draw(st.integers(1, 50)))
    header = [*COLUMNS, name]
    rows = [[*(good_row(f"long{n}", k)[c] for c in COLUMNS), MARKER] for k in range(3)]
    return Hostile(
        "long_header",
        f"interactions/long {n}.csv",
        csv_text(header, rows).encode(),
        INGESTED,
        records=3,
    )


@st.composite
def json_hazards(draw: st.DrawFn, n: int) -> Hostile:
    """Values Python's json rejects beyond JSONDecodeError, objects and arrays in text fields,
    NUL in keys, offsets that exist nowhere — rows quarantined, the file ingested."""
    hazards: list[Callable[[dict[str, Any]], str]] = [
        lambda r: json.dumps(r)[:-1] + ', "notes": ' + "[" * 100_000 + "]" * 100_000 + "}",
        lambda r: json.dumps({**r, "notes": int("9" * 40)}).replace("9" * 40, "9" * 6000),
        lambda r: json.dumps({**r, "revenue": 0}).replace(
            '"revenue": 0', '"revenue": 1' + "0" * 6000
        ),
        lambda r: json.dumps(r).replace(f'"{r["customer_id"]}"', '"C\\ud800x"'),
        lambda r: json.dumps({**r, "notes": f"{MARKER}\ud800"}, ensure_ascii=True),
        lambda r: json.dumps({**r, "channel": {"name": MARKER}}),
        lambda r: json.dumps({**r, "customer_id": ["a", MARKER]}),
        lambda r: json.dumps({**r, "interaction_id": r["interaction_id"] + "\x00"}),
        lambda r: json.dumps({**r, "started_at": "2026-11-20T10:00:00+15:00"}),
        lambda r: json.dumps({**r, "notes": MARKER, "NOTES": MARKER, "source_row": MARKER}),
        lambda r: '{"notes": "' + MARKER + " cut off here",
    ]
    rows = [with_personal(good_row(f"json{n}", k), []) for k in range(draw(st.integers(2, 6)))]
    chosen = draw(st.lists(st.sampled_from(range(len(hazards))), min_size=1, max_size=len(rows)))
    lines = [
        hazards[chosen[k]](row) if k < len(chosen) else json.dumps(row)
        for k, row in enumerate(rows)
    ]
    return Hostile(
        "json_hazards",
        f"interactions/json {n}.jsonl",
        "\n".join(lines).encode("utf-8", "surrogatepass"),
        INGESTED,
        records=len(rows),
    )


@st.composite
def parquet_types(draw: st.DrawFn, n: int) -> Hostile:
    """Pandas' fixed-offset timestamps; unknown columns of types with no text form."""
    count = draw(st.integers(1, 5))
    rows = [good_row(f"pq{n}", k) for k in range(count)]
    columns: dict[str, Any] = {c: [r[c] for r in rows] for c in COLUMNS if c != "started_at"}
    offset = draw(st.sampled_from(["+02:00", "-05:30", "+14:00", "UTC", "Europe/Paris"]))
    columns["started_at"] = pa.array([1_795_168_800_000_000] * count, pa.timestamp("us", offset))
    unknown = {
        "notes": pa.array([MARKER.encode() + b"\xff"] * count, pa.binary()),
        "wait": pa.array([5] * count, pa.duration("s")),
        "attrs": pa.array([[("k", MARKER)]] * count, pa.map_(pa.string(), pa.string())),
        "nested": pa.array([{"a": [MARKER]}] * count, pa.struct([("a", pa.list_(pa.string()))])),
        "Source_Row": pa.array([MARKER] * count),
        "__MALFORMED__": pa.array([MARKER] * count),
    }
    for name in draw(st.lists(st.sampled_from(sorted(unknown)), min_size=1, unique=True)):
        columns[name] = unknown[name]
    return Hostile(
        "parquet_types",
        f"interactions/types {n}.parquet",
        parquet_bytes(columns),
        INGESTED,
        records=count,
    )


@st.composite
def personal_data_in_a_broken_file(draw: st.DrawFn, n: int) -> Hostile:
    """A file rejected whole, where the parser's message would quote personal data."""
    rows = [with_personal(good_row(f"cut{n}", k), []) for k in range(draw(st.integers(1, 5)))]
    header = [*COLUMNS, *PERSONAL]
    text = csv_text(header, [[r[c] for c in header] for r in rows])
    kind = draw(st.sampled_from(["unclosed_quote", "ragged", "latin1"]))
    if kind == "unclosed_quote":  # cut off inside a quoted notes field
        text += ",".join(good_row("x", 99)[c] for c in COLUMNS) + f',a,b,c,"{MARKER} never ends\n'
        return Hostile(
            "pd_in_parse_error",
            f"interactions/cut {n}.csv",
            text.encode(),
            REJECTED,
            "malformed_csv",
        )
    if kind == "ragged":
        text += ",".join(good_row("x", 99)[c] for c in COLUMNS) + f",a,b,c,d,e,{MARKER}\n"
        return Hostile(
            "pd_in_parse_error",
            f"interactions/ragged {n}.csv",
            text.encode(),
            REJECTED,
            "malformed_csv",
        )
    data = (
        text.encode()
        + ",".join(good_row("x", 99)[c] for c in COLUMNS).encode()
        + (f",{MARKER} caf\xe9,b,c,d,e\n".encode("latin-1"))
    )
    return Hostile("pd_in_parse_error", f"interactions/latin1 {n}.csv", data, REJECTED, "encoding")


@st.composite
def repeated_contract_column(draw: st.DrawFn, n: int) -> Hostile:
    name = draw(st.sampled_from(COLUMNS))
    header = [*COLUMNS, spelled(draw, name), "notes"]
    rows = [[*(good_row(f"rep{n}", 1)[c] for c in COLUMNS), "x", MARKER]]
    return Hostile(
        "repeated_contract_column",
        f"interactions/repeat {n}.csv",
        csv_text(header, rows).encode(),
        REJECTED,
        "duplicate_header",
    )


@st.composite
def misplaced(draw: st.DrawFn, n: int) -> Hostile:
    """A good export in a folder that names no source, or a link to a file out of the root."""
    rows = [with_personal(good_row(f"out{n}", k), []) for k in range(2)]
    header = [*COLUMNS, *PERSONAL]
    data = csv_text(header, [[r[c] for c in header] for r in rows]).encode()
    if draw(st.booleans()):
        folder = draw(st.sampled_from(["orders", "Interactions", "misc/interactions"]))
        return Hostile("misplaced", f"{folder}/export {n}.csv", data, REFUSED, "unknown_source")
    passwd = f"root:x:0:0:{MARKER}:/root:/bin/bash\n".encode()
    return Hostile(
        "misplaced",
        f"interactions/link {n}.csv",
        draw(st.sampled_from([data, passwd])),
        REFUSED,
        "outside_raw_root",
        link_outside=True,
    )


KINDS = (
    colliding_columns,
    line_ends_and_blank_lines,
    long_header,
    json_hazards,
    parquet_types,
    personal_data_in_a_broken_file,
    repeated_contract_column,
    misplaced,
)


@st.composite
def corpora(draw: st.DrawFn, first: Callable[..., st.SearchStrategy[Hostile]]) -> list[Hostile]:
    """A variant of `first` beside up to three hostile files of any kind."""
    kinds = [first, *draw(st.lists(st.sampled_from(KINDS), max_size=3))]
    return [draw(kind(n)) for n, kind in enumerate(kinds)]


# ---------------------------------------------------------------------------------------
# running a corpus


def land(base: Path, corpus: list[Hostile], clean_id: str) -> Path:
    """A raw root with the corpus and one clean export; the lake's configuration file."""
    raw = base / "raw"
    outside = base / "outside"
    for item in corpus:
        target = raw / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.link_outside:
            outside.mkdir(exist_ok=True)
            real = outside / Path(item.path).name
            real.write_bytes(item.data)
            target.symlink_to(real)
        else:
            target.write_bytes(item.data)
    clean = raw / "interactions" / "clean.csv"
    clean.parent.mkdir(parents=True, exist_ok=True)
    rows = [good_row(clean_id, k) for k in range(5)]
    clean.write_text(csv_text(list(COLUMNS), [[r[c] for c in COLUMNS] for r in rows]))
    config = base / "servio.toml"
    config.write_text(f'raw_root = "{raw}"\ncurated_root = "{base / "curated"}"\n')
    return config


def run(config: Path) -> Settings:
    """The main job's steps with the `required` checks only: the rules are not under test here
    (the GX suite costs ~1.5 s a file); one test below runs the real `servio run`, with the
    real suite, over a corpus."""
    settings = load_settings(str(config))
    run_sequence(settings, REQUIRED_ONLY)
    return settings


def tables_of(settings: Settings) -> dict[str, pl.DataFrame]:
    lake = Lake(settings.curated_root)
    return {
        name: lake.scan(table).collect() for name, table in curated_tables(settings.catalog).items()
    }


def assert_marker_nowhere(tables: dict[str, pl.DataFrame]) -> None:
    for name, frame in tables.items():
        for column in frame.columns:
            text = frame.get_column(column).cast(pl.String)
            assert not text.str.contains(MARKER, literal=True).any(), (name, column)


def assert_outcome(item: Hostile, ledger: pl.DataFrame, tables: dict[str, pl.DataFrame]) -> None:
    entries = ledger.filter(pl.col("source_file") == item.path)
    assert entries.height == 1, (item.kind, entries)
    entry = entries.row(0, named=True)
    assert entry["status"] == item.status, (item.kind, entry)
    quarantine = tables["quarantine"].filter(pl.col("source_file") == item.path)
    curated = tables["interactions"].filter(pl.col("source_file") == item.path)
    if item.status != INGESTED:
        assert entry["reason"].startswith(f"{item.code}: "), (item.kind, entry["reason"])
        assert (entry["rows_read"], entry["rows_valid"], entry["rows_quarantined"]) == (0, 0, 0)
        assert curated.is_empty()
        whole_file = quarantine.filter(pl.col("row_number").is_null())
        assert whole_file.height == (1 if item.status == REJECTED else 0), item.kind
        if item.status == REJECTED:
            assert whole_file["reason_codes"].to_list() == [f"file:{item.code}"]
        return
    assert entry["reason"] is None, (item.kind, entry["reason"])
    assert entry["rows_read"] == entry["rows_valid"] + entry["rows_quarantined"]
    if item.records is not None:
        assert entry["rows_read"] == item.records, item.kind
    assert quarantine.height == entry["rows_quarantined"], item.kind
    assert curated.height == entry["rows_curated"], item.kind
    assert entry["rows_valid"] == entry["rows_curated"] + entry["rows_superseded"], item.kind


def check_corpus(base: Path, corpus: list[Hostile], clean_id: str) -> None:
    config = land(base, corpus, clean_id)
    settings = run(config)
    tables = tables_of(settings)
    ledger = tables["ingest_ledger"]
    for item in corpus:
        assert_outcome(item, ledger, tables)
    [clean] = ledger.filter(pl.col("source_file") == "interactions/clean.csv").to_dicts()
    assert (clean["status"], clean["rows_curated"]) == (INGESTED, 5)
    assert_marker_nowhere(tables)
    before = {k: v for k, v in h.digest(base / "curated").items() if not k.startswith("_servio/")}
    run(config)
    after = {k: v for k, v in h.digest(base / "curated").items() if not k.startswith("_servio/")}
    assert after == before, "a second run over the same corpus changed a table"


EXAMPLES_PER_KIND = 12


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_every_hostile_file_is_isolated(
    kind: Callable[..., st.SearchStrategy[Hostile]], tmp_path: Path
) -> None:
    examples = iter(range(1_000_000))

    @settings(
        max_examples=EXAMPLES_PER_KIND,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(corpora(kind))
    def check(corpus: list[Hostile]) -> None:
        n = next(examples)
        check_corpus(tmp_path / f"example-{n}", corpus, f"clean{n}")

    check()


# ---------------------------------------------------------------------------------------
# hash memory: location and I/O failures leave the bytes eligible (named cases)


def _ledger(config: Path) -> pl.DataFrame:
    settings = load_settings(str(config))
    return Lake(settings.curated_root).scan(INGEST_LEDGER).collect().sort("source_seq")


def _export(prefix: str, count: int = 3) -> bytes:
    rows = [with_personal(good_row(prefix, k), []) for k in range(count)]
    header = [*COLUMNS, *PERSONAL]
    return csv_text(header, [[r[c] for c in header] for r in rows]).encode()


def test_a_misfiled_export_moved_to_its_folder_is_ingested(tmp_path: Path) -> None:
    """Refused for its folder, then moved: ingested, not a duplicate of itself."""
    config = land(tmp_path, [Hostile("x", "orders/export.csv", _export("mv"), REFUSED)], "c")
    run(config)
    run(config)  # unchanged: nothing new is recorded
    raw = tmp_path / "raw"
    (raw / "orders" / "export.csv").rename(raw / "interactions" / "export.csv")
    run(config)
    ledger = _ledger(config).select("source_file", "status", "rows_curated")
    assert ledger.rows() == [
        ("interactions/clean.csv", INGESTED, 5),
        ("orders/export.csv", REFUSED, 0),
        ("interactions/export.csv", INGESTED, 3),
    ]


def test_a_run_with_a_wrong_raw_root_loses_nothing(tmp_path: Path) -> None:
    """raw_root set one folder too deep: every file sits at the root and is refused; with the
    right raw_root the same bytes are ingested."""
    config = land(tmp_path, [], "wrong")
    right = config.read_text()
    config.write_text(right.replace('/raw"', '/raw/interactions"'))
    run(config)
    assert _ledger(config).select("source_file", "status").rows() == [("clean.csv", REFUSED)]
    config.write_text(right)
    run(config)
    assert _ledger(config).select("source_file", "status").rows() == [
        ("clean.csv", REFUSED),
        ("interactions/clean.csv", INGESTED),
    ]


def test_a_file_removed_between_discovery_and_read_is_deferred(tmp_path: Path) -> None:
    config = land(tmp_path, [Hostile("x", "interactions/gone.csv", _export("gone"), DEFERRED)], "c")
    gone = tmp_path / "raw" / "interactions" / "gone.csv"
    kept = gone.read_bytes()

    def remove(**_: Any) -> None:
        gone.unlink(missing_ok=True)

    with faults.inject("discovered", remove):
        run(config)
    [entry] = _ledger(config).filter(pl.col("source_file") == "interactions/gone.csv").to_dicts()
    assert (entry["status"], entry["reason"].split(":")[0]) == (DEFERRED, "vanished")
    gone.write_bytes(kept)  # landed again: the same bytes are still eligible
    run(config)
    statuses = _ledger(config).filter(pl.col("source_file") == "interactions/gone.csv")["status"]
    assert statuses.to_list() == [DEFERRED, INGESTED]


def test_a_file_rewritten_while_read_is_not_recorded_and_the_next_run_takes_it(
    tmp_path: Path,
) -> None:
    """The first read sees 3 records, then 2 more are appended: nothing of it is published;
    the next run ingests the 5 records once (quarantine and ledger not doubled)."""
    header = [*COLUMNS, *PERSONAL]
    rows = [with_personal(good_row("grow", k), []) for k in range(5)]
    rows[1]["channel"] = "fax"  # one bad row, to count quarantine rows
    first = csv_text(header, [[r[c] for c in header] for r in rows[:3]])
    config = land(tmp_path, [Hostile("x", "interactions/grow.csv", first.encode(), INGESTED)], "c")
    growing = tmp_path / "raw" / "interactions" / "grow.csv"
    more = csv_text(header, [[r[c] for c in header] for r in rows[3:]]).split("\n", 1)[1]

    def append(landed: landing.LandedFile) -> None:  # once its first records are read
        if landed.path == str(growing) and growing.stat().st_size == len(first):
            with growing.open("a") as handle:
                handle.write(more)

    with faults.inject("file_read", append):
        run(config)
    ledger = _ledger(config).filter(pl.col("source_file") == "interactions/grow.csv")
    assert ledger.select("status").to_series().to_list() == [DEFERRED]
    assert ledger["reason"][0].startswith("changed_while_read: ")
    settings = run(config)
    tables = tables_of(settings)
    entries = tables["ingest_ledger"].filter(pl.col("source_file") == "interactions/grow.csv")
    assert entries.select("status", "rows_read", "rows_quarantined").rows() == [
        (DEFERRED, 0, 0),
        (INGESTED, 5, 0),
    ]
    assert (
        tables["interactions"].filter(pl.col("source_file") == "interactions/grow.csv").height == 5
    )
    assert tables["quarantine"].filter(pl.col("source_file") == "interactions/grow.csv").is_empty()


def test_an_unreadable_file_is_deferred_recorded_once_and_ingested_once_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permission denied (simulated for root, who may read anything): the run goes on, the
    file is recorded once as deferred, not remembered by hash, and ingested once readable."""
    config = land(
        tmp_path, [Hostile("x", "interactions/locked.csv", _export("lock"), DEFERRED)], "c"
    )
    locked = tmp_path / "raw" / "interactions" / "locked.csv"
    real_open = os.open

    def denied(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    if os.geteuid() == 0:
        monkeypatch.setattr(os, "open", denied)
    else:
        locked.chmod(0)
    run(config)
    run(config)
    ledger = _ledger(config)
    [entry] = ledger.filter(pl.col("source_file") == "interactions/locked.csv").to_dicts()
    assert (entry["status"], entry["sha256"]) == (DEFERRED, None)
    assert entry["reason"] == "permission_denied: permission denied; the next run tries again"
    assert ledger.filter(pl.col("source_file") == "interactions/clean.csv")["status"].to_list() == [
        INGESTED
    ]
    monkeypatch.setattr(os, "open", real_open)
    locked.chmod(0o644)
    run(config)
    statuses = _ledger(config).filter(pl.col("source_file") == "interactions/locked.csv")["status"]
    assert statuses.to_list() == [DEFERRED, INGESTED]


def test_links_folders_and_special_files_out_of_reach_are_refused_unread(tmp_path: Path) -> None:
    """A link to a folder outside the root, a loop of links, a FIFO: refused with a reason, the
    run goes on; a link inside the root is read (its content is a duplicate)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "dump.csv").write_bytes(_export("dump"))
    config = land(tmp_path, [], "c")
    raw = tmp_path / "raw" / "interactions"
    (raw / "linked").symlink_to(outside, target_is_directory=True)
    (raw / "loop.csv").symlink_to(raw / "loop.csv")
    (raw / "same.csv").symlink_to(raw / "clean.csv")
    os.mkfifo(raw / "pipe.csv")
    run(config)
    run(config)
    ledger = _ledger(config).select(
        "source_file", "status", pl.col("reason").str.split(":").list.first()
    )
    assert sorted(ledger.rows()) == [
        ("interactions/clean.csv", INGESTED, None),
        ("interactions/linked", REFUSED, "outside_raw_root"),
        ("interactions/loop.csv", REFUSED, "outside_raw_root"),
        ("interactions/pipe.csv", REFUSED, "not_a_file"),
        ("interactions/same.csv", "duplicate", "same content as interactions/clean.csv"),
    ]


@pytest.mark.parametrize(
    ("where", "step"),
    [("file_read", "reading the file"), ("standardising", "standardising records 1–3")],
)
def test_a_panic_rejects_that_file_only_and_it_is_retried(
    where: str, step: str, tmp_path: Path
) -> None:
    """A Rust panic (pyo3's PanicException) is a BaseException: caught at the file's boundary,
    the file rejected as `internal_error` naming the step and the exception type (never its
    message), retried by every run but recorded once, and ingested once servio no longer
    fails on it. The panic is raised while the file is read, or while it is standardised
    (fault points `file_read`, `standardising`)."""
    config = land(
        tmp_path, [Hostile("x", "interactions/panic.csv", _export("panic"), REJECTED)], "c"
    )
    attempts: list[int] = []

    def panic() -> None:
        attempts.append(1)
        raise pl.exceptions.PanicException(f"index out of bounds: {MARKER}")

    def panicking(landed: landing.LandedFile) -> None:
        if Path(landed.path).name == "panic.csv":
            panic()

    with faults.inject(where, panicking):
        run(config)
        run(config)
    assert len(attempts) == 2, "an internal error is not remembered by hash: retried"
    settings = load_settings(str(config))
    tables = tables_of(settings)
    [entry] = (
        tables["ingest_ledger"].filter(pl.col("source_file") == "interactions/panic.csv").to_dicts()
    )
    assert entry["status"] == REJECTED
    assert entry["reason"] == (
        f"internal_error: servio failed while {step} (PanicException); "
        "the file is tried again by the next run"
    )
    assert tables["interactions"].filter(pl.col("source_file") == "interactions/clean.csv").height
    assert_marker_nowhere(tables)
    run(config)
    statuses = _ledger(config).filter(pl.col("source_file") == "interactions/panic.csv")["status"]
    assert statuses.to_list() == [REJECTED, INGESTED]
