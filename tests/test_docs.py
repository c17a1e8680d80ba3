"""The data dictionary is generated from schemas/ and the committed copy never drifts."""

from __future__ import annotations

from pathlib import Path

from servio.docs import data_dictionary, write_docs
from servio.schemas.catalog import load_catalog
from servio.schemas.tables import curated_tables

REPO = Path(__file__).resolve().parents[1]


def test_committed_dictionary_matches_the_schemas() -> None:
    committed = (REPO / "docs" / "DATA_DICTIONARY.md").read_text(encoding="utf-8")
    assert committed == data_dictionary(load_catalog()) + "\n", "run `servio docs` and commit"


def test_every_curated_column_is_described() -> None:
    text = data_dictionary(load_catalog())
    for table in curated_tables(load_catalog()).values():
        assert f"### `{table.name}`" in text
        for column in table.columns:
            assert f"| `{column.name}` |" in text


def test_write_docs_writes_markdown_and_html(tmp_path: Path) -> None:
    md, html = write_docs(load_catalog(), tmp_path)
    assert md.read_text(encoding="utf-8").startswith("# servio data dictionary")
    assert "<table>" in html.read_text(encoding="utf-8")
