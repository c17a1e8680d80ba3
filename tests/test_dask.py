"""`servio-run` on a two-worker Dask cluster (prefect-dask) equals the single-process run, row
for row: files staged on the workers, the snapshot in customer-hash buckets across them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from schemas.tables import curated_tables
from servio.config import load_settings
from servio.generate import GenerateOptions, generate
from servio.pipeline import new_run_id, run_steps
from servio.storage import Lake

pytestmark = pytest.mark.e2e

# What differs between two runs of the same data by design: when and by which run (and the
# ingestion time quoted in the detail of a future-timestamp rule).
RUN_COLUMNS = {"run_id", "ingested_at", "quarantined_at"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as local:
        yield local


def _config(root: Path, raw: Path, name: str) -> Path:
    config = root / f"{name}.toml"
    config.write_text(f'raw_root = "{raw}"\ncurated_root = "{root / name}"\n')
    return config


def _tables(curated: Path, settings: Any) -> dict[str, pl.DataFrame]:
    lake = Lake(curated)
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


def _gx_loaded() -> bool:
    from servio import validation

    return validation._GX is not None


def test_a_dask_run_equals_the_single_process_run(
    tmp_path: Path, cluster: Any, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.run import run_pipeline
    from flows.runners import with_runner

    raw = tmp_path / "raw"
    generate(raw, GenerateOptions(customers=250, days=60, seed=11, end_date=date(2026, 11, 20)))
    single = load_settings(_config(tmp_path, raw, "single"))
    run_steps(single, Lake(single.curated_root), new_run_id())

    monkeypatch.setenv("SERVIO_DASK_ADDRESS", cluster.scheduler_address)
    monkeypatch.setenv("SERVIO_SNAPSHOT_BUCKETS", "3")
    config = _config(tmp_path, raw, "dask")
    settings = load_settings(config)
    assert settings.dask_address == cluster.scheduler_address

    summary = with_runner(run_pipeline, settings)(str(config))

    assert summary.snapshot.shuffle_bytes > 0
    # The files were validated in the worker processes: Great Expectations is loaded there.
    loaded = cluster.get_client().run(_gx_loaded)
    assert len(loaded) == 2 and any(loaded.values()), loaded
    expected = _tables(tmp_path / "single", single)
    got = _tables(tmp_path / "dask", settings)
    for name, frame in expected.items():
        assert frame.height > 0, name
        assert_frame_equal(got[name], frame, check_exact=True)
