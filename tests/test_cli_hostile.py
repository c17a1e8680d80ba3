"""`servio run` over hostile input (issue #16, class 9): no traceback for any file, names
printed literally (Rich markup escaped), Data Docs file names within 255 bytes, what fails
after the publish is a warning (exit 6), `--as-of` mistakes are clear, and the Data Docs of
a run killed after its publish are written by the next run. Real Prefect flow, real GX."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from servio import faults
from servio.cli import app
from servio.config import load_settings
from servio.lake.lake import Lake
from tests import faults_harness as h
from tests.test_hostile_corpus import (
    COLUMNS,
    KINDS,
    Hostile,
    assert_marker_nowhere,
    csv_text,
    good_row,
    land,
    tables_of,
)

pytestmark = pytest.mark.e2e

# Names Rich would read as markup, and names near the 255-byte limit of a file name.
UNSAFE_NAMES = [
    "interactions/[bold]x[/bold] [link=file:x]y[/link].csv",
    "interactions/[/] closing.csv",
    "interactions/[red]ünïcode 😀.csv",
    "interactions/" + "n" * 200 + ".csv",
    "interactions/" + "顧客" * 40 + ".csv",  # 240 bytes of UTF-8
]


MISFILED = "orders/[bold]x[/bold] [link=file:x]y[/link].csv"


def _clean(prefix: str, count: int = 3) -> bytes:
    rows = [good_row(prefix, k) for k in range(count)]
    return csv_text(list(COLUMNS), [[r[c] for c in COLUMNS] for r in rows]).encode()


@st.composite
def every_kind(draw: st.DrawFn) -> list[Hostile]:
    hostile = [draw(kind(n)) for n, kind in enumerate(KINDS)]
    named = [
        Hostile("unsafe_name", name, _clean(f"name{n}"), "ingested")
        for n, name in enumerate(UNSAFE_NAMES)
    ]
    # Printed by `servio run` (a file left for the next run is listed with its reason).
    shown = Hostile("unsafe_name", MISFILED, _clean("shown"), "refused", "unknown_source")
    return [*hostile, *named, shown]


def _docs_pages(curated: Path) -> list[Path]:
    docs = Lake(curated).data_docs_dir / "validations"
    return sorted(docs.rglob("*.html")) if docs.exists() else []


@settings(
    max_examples=1,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.generate],  # one corpus of every kind; shrinking it would take hours
)
@given(corpus=every_kind())
def test_servio_run_over_the_hostile_corpus_prints_no_traceback(
    prefect_harness: None, corpus: list[Hostile]
) -> None:
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="servio-cli-hostile-"))
    config = land(base, corpus, "clean-cli")
    code, out, err = h.finish(h.servio_run(config, server=True), timeout=600)
    assert code == 0, out + err
    assert "Traceback" not in out + err, out + err
    assert "[bold]x[/bold] [link=file:x]y[/link].csv" in out.replace("\n", ""), out
    settings_ = load_settings(str(config))
    tables = tables_of(settings_)
    assert_marker_nowhere(tables)
    ledger = tables["ingest_ledger"]
    for name in UNSAFE_NAMES:
        [status] = ledger.filter(pl.col("source_file") == name)["status"].to_list()
        assert status == "ingested", name
    pages = _docs_pages(Path(settings_.curated_root))
    assert all(len(part.encode()) <= 255 for page in pages for part in page.parts)
    validated = ledger.filter(pl.col("status") == "ingested").height
    assert len(pages) == validated, (len(pages), validated)
    before = {k: v for k, v in h.digest(base / "curated").items() if not k.startswith("_servio/")}
    code, out, err = h.finish(h.servio_run(config, server=True), timeout=600)
    assert code == 0 and "Traceback" not in out + err, out + err
    after = {k: v for k, v in h.digest(base / "curated").items() if not k.startswith("_servio/")}
    assert after == before


def test_as_of_that_is_not_a_date_is_a_usage_error(tmp_path: Path) -> None:
    config = land(tmp_path, [], "x")
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--as-of", "30/06/2026"])
    assert result.exit_code == 2
    assert "is not a date" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "curated").exists()
    result = CliRunner().invoke(app, ["report", "--config", str(config), "--as-of", "soon"])
    assert result.exit_code == 2


def test_as_of_without_data_in_its_window_says_so(tmp_path: Path, prefect_harness: None) -> None:
    config = land(tmp_path, [], "window")
    first = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert first.exit_code == 0, first.output
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--as-of", "2001-01-01"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "no interaction or survey response in its window" in flat
    assert "Report:" not in flat  # no stale path to another date's report
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_full_disk_while_writing_data_docs_after_the_publish_is_a_warning(
    tmp_path: Path, prefect_harness: None
) -> None:
    """The tables are published (exit 6, not 5: nothing to undo); the next run writes the
    Data Docs of this run's files."""
    config = land(tmp_path, [], "disk")

    def full() -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with faults.inject("rendering_data_docs", full):
        result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 6, result.output
    flat = " ".join(result.output.split())
    assert "warning: the Great Expectations Data Docs could not be written" in flat
    assert "nothing was published" not in flat
    settings_ = load_settings(str(config))
    ledger = tables_of(settings_)["ingest_ledger"]
    assert ledger["status"].to_list() == ["ingested"]
    (tmp_path / "raw" / "interactions" / "more.csv").write_bytes(_clean("more"))
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert len(_docs_pages(Path(settings_.curated_root))) == 2  # clean.csv's page too


def test_data_docs_of_a_run_killed_after_its_publish_come_with_the_next_run(
    tmp_path: Path, prefect_harness: None
) -> None:
    config = land(tmp_path, [], "killed")
    code, _, err = h.finish(
        h.servio_run(config, server=True, SERVIO_KILL_AT="after_ingest_publish"), 600
    )
    assert code == -9, err
    settings_ = load_settings(str(config))
    curated = Path(settings_.curated_root)
    assert tables_of(settings_)["ingest_ledger"]["status"].to_list() == ["ingested"]  # published
    assert _docs_pages(curated) == []
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 0, result.output
    pages = _docs_pages(curated)
    assert len(pages) == 1 and "clean" in pages[0].as_posix()
