"""Discovering and reading landed exports (SPEC §1.1, §1.2)."""

from __future__ import annotations

import csv
import gzip
import io
import os
import tempfile
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servio.raw.landing import (
    FileDeferred,
    FileRejected,
    LandedFile,
    check_unchanged,
    discover,
    is_in_flight,
    read_raw,
)
from servio.raw.readers import delimited


def _landed(path: Path, fmt: str) -> LandedFile:
    return LandedFile(str(path), path.name, "interactions", fmt, path.stat().st_size, "x")


@pytest.mark.parametrize(
    "name",
    [".hidden.csv", "_manifest.json", "a.csv.tmp", "b.csv.part", "c.partial", "d.csv.crdownload"],
)
def test_in_flight_names_are_ignored(name: str) -> None:
    assert is_in_flight(name)


def test_discover_skips_in_flight_files_and_names_source_and_format(tmp_path: Path) -> None:
    (tmp_path / "interactions").mkdir()
    (tmp_path / "surveys").mkdir()
    (tmp_path / "interactions" / "a.csv.gz").write_bytes(b"x")
    (tmp_path / "interactions" / "b.csv.part").write_bytes(b"x")
    (tmp_path / "surveys" / "s.JSONL").write_bytes(b"x")
    (tmp_path / "_generator_manifest.json").write_bytes(b"x")
    found = {f.relative_path: (f.source, f.file_format) for f in discover(tmp_path)}
    assert found == {
        "interactions/a.csv.gz": ("interactions", "csv.gz"),
        "surveys/s.JSONL": ("surveys", "jsonl"),
    }


def test_csv_with_bom_quoted_newlines_and_messy_headers(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes('\ufeff Interaction_ID ,Reason\n1,"line one\nline, two"\n2,\n'.encode())
    frame = read_raw(_landed(path, "csv"), ["interaction_id", "reason"])
    assert frame.columns == ["source_row", "interaction_id", "reason"]
    assert frame["reason"].to_list() == ["line one\nline, two", None]
    assert frame["source_row"].to_list() == [1, 2]


def test_unknown_columns_are_never_read(tmp_path: Path) -> None:
    """Personal data and names servio uses itself stay out of the frame, whatever the case."""
    path = tmp_path / "a.csv"
    path.write_bytes(b"a,Notes,SOURCE_ROW,__malformed__,b,,,a_x,A_X\n1,secret,9,x,2,,,p,q\n")
    frame = read_raw(_landed(path, "csv"), ["a", "b"])
    assert frame.rows() == [(1, "1", "2")]


def test_csv_blank_lines_are_not_records_and_cr_only_files_are_split(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a,b\r1,2\r\r,\r3,4\r")
    frame = read_raw(_landed(path, "csv"), ["a", "b"])
    assert frame.rows() == [(1, "1", "2"), (2, "3", "4")]


def test_gzip_csv_reads_like_plain_csv(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert read_raw(_landed(path, "csv.gz"), ["a", "b"])["b"].to_list() == ["2"]


def test_jsonl_values_become_text_and_a_broken_line_is_kept_as_malformed(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"A": 1, "b": true}\n{not json}\n{"a": "x", "b": null}\n'
        '{"a": 2.0250000000000004, "b": {"c": 1}, "c": 1}\n',
        encoding="utf-8",
    )
    frame = read_raw(_landed(path, "jsonl"), ["a", "b"])
    assert frame["a"].to_list() == ["1", None, "x", "2.0250000000000004"]  # numbers keep their text
    assert frame["b"].to_list() == ["true", None, None, None]
    assert frame["__not_text__"].to_list() == [None, None, None, "b"]
    assert "c" not in frame.columns
    assert frame["__malformed__"].to_list()[1].startswith("not valid JSON")


def test_parquet_keeps_instants_of_typed_timestamps(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    path = tmp_path / "a.parquet"
    pl.DataFrame({"started_at": [datetime(2026, 1, 5, 10, tzinfo=UTC)], "n": [1.5]}).write_parquet(
        path
    )
    frame = read_raw(_landed(path, "parquet"), ["started_at", "n"])
    assert frame["started_at"].to_list() == ["2026-01-05T10:00:00+00:00"]
    assert frame["n"].to_list() == ["1.5"]


@pytest.mark.parametrize(
    ("content", "fmt", "code"),
    [
        (b"a,A\n1,2\n", "csv", "duplicate_header"),
        (b'a,b\n1,"never closed\n2,3\n', "csv", "malformed_csv"),
        (b'a,b\n1,"utf-8 quoted by the parser\n', "csv", "malformed_csv"),  # not "encoding"
        (b"a,b\n1,caf\xc3", "csv", "encoding"),  # ends inside a character
        (b"", "csv", "no_header"),
        (b"a,b\n1,\xe9\n", "csv", "encoding"),
        (b"\x1f\x8b\x08\x00garbage", "csv.gz", "unreadable"),
        (b"PAR1 not really", "parquet", "unreadable"),
        (b"a,b\n1,2\n", "xlsx", "unsupported_format"),
    ],
)
def test_unusable_files_are_rejected_whole_with_a_reason(
    tmp_path: Path, content: bytes, fmt: str, code: str
) -> None:
    path = tmp_path / f"f.{fmt}"
    path.write_bytes(content)
    with pytest.raises(FileRejected) as caught:
        read_raw(_landed(path, fmt), ["a", "b"])
    assert caught.value.code == code


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.text(alphabet='ab,"\r\n', max_size=6), min_size=1, max_size=4),
        min_size=1,
        max_size=6,
    ),
    ends=st.lists(st.sampled_from(["\r", "\n", "\r\n"]), min_size=6, max_size=6),
    block=st.integers(1, 9),
)
def test_line_ends_outside_quotes_become_lf_in_any_block_size(
    rows: list[list[str]], ends: list[str], block: int
) -> None:
    """Any mix of `\\r`, `\\n`, `\\r\\n` records, fields quoting `"`, `,` and line ends: rewritten
    in blocks of any size, Python's csv module reads the same records, and no bare `\\r` is
    left outside a quoted field (what Polars would not split on)."""
    text = "".join(_csv_line(row, end) for row, end in zip(rows, ends, strict=False))
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch, "in.csv"), Path(scratch, "out.csv")
        source.write_bytes(text.encode())
        with mock.patch.object(delimited, "COPY_BLOCK_BYTES", block):
            delimited._cr_to_lf(source, target)
        out = target.read_bytes().decode()
    assert list(csv.reader(io.StringIO(out, newline=""))) == list(
        csv.reader(io.StringIO(text, newline=""))
    )
    outside = out.split('"')[::2]  # the text between quoted fields
    assert not any("\r" in part for part in outside), out


def _csv_line(row: list[str], end: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=end).writerow(row)
    return out.getvalue()


def test_a_file_rewritten_in_place_after_discovery_is_deferred(tmp_path: Path) -> None:
    """Same size, modification time set back: the change time still tells (`check_unchanged`
    does not hash the file again)."""
    path = tmp_path / "interactions" / "a.csv"
    path.parent.mkdir()
    path.write_bytes(b"interaction_id\n1\n")
    (landed,) = discover(tmp_path)
    check_unchanged(landed)  # unchanged: nothing raised
    before = path.stat()
    path.write_bytes(b"interaction_id\n2\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(FileDeferred) as deferred:
        check_unchanged(landed)
    assert deferred.value.code == "changed_while_read"
