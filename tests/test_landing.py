"""Discovering and reading landed exports (SPEC §1.1, §1.2)."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from servio.landing import FileRejected, LandedFile, discover, is_in_flight, read_raw


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
    path.write_bytes('\ufeff Interaction_ID ,Notes\n1,"line one\nline, two"\n2,\n'.encode())
    frame = read_raw(_landed(path, "csv"))
    assert frame.columns == ["source_row", "interaction_id", "notes"]
    assert frame["notes"].to_list() == ["line one\nline, two", None]
    assert frame["source_row"].to_list() == [1, 2]


def test_gzip_csv_reads_like_plain_csv(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert read_raw(_landed(path, "csv.gz"))["b"].to_list() == ["2"]


def test_jsonl_values_become_text_and_a_broken_line_is_kept_as_malformed(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"A": 1, "b": true}\n{not json}\n{"a": "x", "b": null}\n', encoding="utf-8")
    frame = read_raw(_landed(path, "jsonl"))
    assert frame["a"].to_list() == ["1", None, "x"]
    assert frame["b"].to_list() == ["true", None, None]
    assert frame["__malformed__"].to_list()[1].startswith("not valid JSON")


def test_parquet_keeps_instants_of_typed_timestamps(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    path = tmp_path / "a.parquet"
    pl.DataFrame({"started_at": [datetime(2026, 1, 5, 10, tzinfo=UTC)], "n": [1.5]}).write_parquet(
        path
    )
    frame = read_raw(_landed(path, "parquet"))
    assert frame["started_at"].to_list() == ["2026-01-05T10:00:00+00:00"]
    assert frame["n"].to_list() == ["1.5"]


@pytest.mark.parametrize(
    ("content", "fmt", "code"),
    [
        (b"a,A\n1,2\n", "csv", "duplicate_header"),
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
        read_raw(_landed(path, fmt))
    assert caught.value.code == code
