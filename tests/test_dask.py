"""`servio-run` on a two-worker Dask cluster (prefect-dask) equals the single-process,
local-disk run, row for row: files staged on the workers, the snapshot in customer-hash
buckets across them — with the lake on local disk, and with raw and curated roots on a
loopback S3 (moto) that the workers reach with the standard AWS settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from servio.config import load_settings
from servio.lake.lake import Lake
from servio.schemas.tables import curated_tables
from servio.tools.generate import GenerateOptions, generate
from tests.runs import run
from tests.s3server import objects, s3_environment, upload_tree

pytestmark = pytest.mark.e2e

# What differs between two runs of the same data by design: when and by which run (and the
# ingestion time quoted in the detail of a future-timestamp rule).
RUN_COLUMNS = {"run_id", "ingested_at", "quarantined_at"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A scheduler and two worker processes on loopback, for both runs of the module, started
    inside the loopback S3's AWS settings (the workers inherit the environment; the local-disk
    run does not read them)."""
    from distributed import LocalCluster

    with (
        s3_environment(tmp_path_factory.mktemp("aws"), ("raw", "lake")),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as local,
    ):
        yield local


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("exports")
    generate(raw, GenerateOptions(customers=250, days=60, seed=11, end_date=date(2026, 11, 20)))
    return raw


@pytest.fixture(scope="module")
def single_process(
    exports: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, pl.DataFrame]:
    """The reference: one process, no Prefect, local disk, one bucket."""
    root = tmp_path_factory.mktemp("single")
    settings = load_settings(_config(root, str(exports), str(root / "curated")))
    run(settings)
    return _tables(settings)


def _config(root: Path, raw_root: str, curated_root: str) -> Path:
    config = root / "servio.toml"
    config.write_text(f'raw_root = "{raw_root}"\ncurated_root = "{curated_root}"\n')
    return config


def _tables(settings: Any) -> dict[str, pl.DataFrame]:
    lake = Lake(settings.curated_root)
    out: dict[str, pl.DataFrame] = {}
    for name, table in curated_tables(settings.catalog).items():
        frame = lake.scan(table).collect()
        keep = [c for c in frame.columns if c not in RUN_COLUMNS]
        sort_by = [c for c in (*table.key, "row_number", "reason_codes") if c in keep]
        if "reason_detail" in keep:  # "… after the ingestion time + 1 day (<that time>)"
            frame = frame.with_columns(
                pl.col("reason_detail").str.replace_all(r"\(\d{4}-\d\d-\d\dT[\d:]+Z\)", "(T)")
            )
        out[name] = frame.select(keep).sort(sort_by, nulls_last=True)
    return out


def _suites_run() -> int:
    from servio.validation import gx

    return gx.suites_run()


def _run_on_dask(
    config: Path, cluster: Any, monkeypatch: pytest.MonkeyPatch, report: bool = True
) -> Any:
    from servio.flows.run import run_pipeline
    from servio.flows.runners import with_runner
    from servio.validation import gx

    monkeypatch.setenv("SERVIO_DASK_ADDRESS", cluster.scheduler_address)
    monkeypatch.setenv("SERVIO_SNAPSHOT_BUCKETS", "3")
    settings = load_settings(config)
    assert settings.dask_address == cluster.scheduler_address
    client = cluster.get_client()
    before, here = client.run(_suites_run), gx.suites_run()
    summary = with_runner(run_pipeline, settings)(str(config), write_html_report=report)
    assert (summary.report_path is not None) == report
    assert summary.snapshot.shuffle_bytes > 0
    # This run's files were validated in the worker processes (both sources), not here.
    after = client.run(_suites_run)
    assert len(after) == 2 and sum(after.values()) - sum(before.values()) >= 2, (before, after)
    assert gx.suites_run() == here
    return settings


def _assert_same_tables(got: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame]) -> None:
    assert got.keys() == expected.keys()
    for name, frame in expected.items():
        assert frame.height > 0, name
        assert_frame_equal(got[name], frame, check_exact=True)


def test_a_dask_run_equals_the_single_process_run(
    tmp_path: Path,
    exports: Path,
    single_process: dict[str, pl.DataFrame],
    prefect_harness: None,
    cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(tmp_path, str(exports), str(tmp_path / "curated"))
    # No HTML report (drawn in this process from the tables compared here; the S3 run below
    # draws one): the tables are the point.
    settings = _run_on_dask(config, cluster, monkeypatch, report=False)
    _assert_same_tables(_tables(settings), single_process)


def test_a_dask_run_against_s3_equals_the_single_process_local_run(
    tmp_path: Path,
    exports: Path,
    single_process: dict[str, pl.DataFrame],
    prefect_harness: None,
    cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the report and Data Docs of an S3 lake go to ./servio-site
    upload_tree(exports, "raw", "crm")
    config = _config(tmp_path, "s3://raw/crm", "s3://lake/crm")
    settings = _run_on_dask(config, cluster, monkeypatch)
    # Staging (the workers' parts, the shuffle) is gone; no publication is pending.
    assert not objects("lake", "crm/_servio/staging/")
    assert "crm/_servio/publication.json" not in objects("lake", "crm/_servio/")
    _assert_same_tables(_tables(settings), single_process)
