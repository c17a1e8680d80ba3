"""Where flow tasks run: threads by default, a Dask cluster when the settings name one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servio.config import ConfigError, Settings, load_settings
from servio.flows.runners import task_runner, with_runner


def test_without_an_address_the_flow_keeps_its_own_runner() -> None:
    from servio.flows.run import run_pipeline

    settings = Settings()
    assert task_runner(settings) is None
    assert with_runner(run_pipeline, settings) is run_pipeline


def test_a_scheduler_address_gives_a_dask_runner_for_that_cluster() -> None:
    from prefect_dask import DaskTaskRunner

    from servio.flows.run import run_pipeline

    settings = load_settings(None, {"SERVIO_DASK_ADDRESS": "tcp://10.0.0.5:8786"})
    flow = with_runner(run_pipeline, settings)
    assert isinstance(flow.task_runner, DaskTaskRunner)
    assert flow.task_runner.address == "tcp://10.0.0.5:8786"
    assert flow.name == run_pipeline.name


def test_local_starts_a_cluster_that_listens_on_loopback_only() -> None:
    runner = task_runner(load_settings(None, {"SERVIO_DASK_ADDRESS": "local"}))
    assert runner is not None and runner.address is None
    assert runner.cluster_kwargs["host"] == "127.0.0.1"
    assert runner.cluster_kwargs["dashboard_address"] is None


@pytest.mark.parametrize("address", ["10.0.0.5:8786", "scheduler"])
def test_an_address_without_a_scheme_is_refused_by_name(address: str) -> None:
    with pytest.raises(ConfigError, match="dask_address"):
        load_settings(None, {"SERVIO_DASK_ADDRESS": address})


def test_servers_servio_starts_listen_on_loopback_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from servio.cli import _quiet_defaults

    monkeypatch.delenv("PREFECT_SERVER_API_HOST", raising=False)
    _quiet_defaults()
    assert os.environ["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    monkeypatch.setenv("PREFECT_SERVER_API_HOST", "0.0.0.0")
    _quiet_defaults()
    assert os.environ["PREFECT_SERVER_API_HOST"] == "0.0.0.0"  # told otherwise


def _worker_facts(table: str) -> tuple[str, int]:
    """In a worker: how its process was started (the multiprocessing Process class the
    nanny made it with: SpawnProcess, ForkProcess…), and a Delta read's row count."""
    import multiprocessing

    import polars as pl

    started = type(multiprocessing.current_process()).__name__
    return started, pl.scan_delta(table).select(pl.len()).collect().item()


@pytest.mark.e2e
def test_dask_workers_servio_starts_are_spawned_and_read_delta_after_the_parent_did(
    tmp_path: Path,
) -> None:
    """deltalake panics in a process forked after it was used: here the parent uses it
    first, then starts servio's local cluster; its workers are spawned and read Delta."""
    import dask
    import polars as pl
    from deltalake import write_deltalake

    table = str(tmp_path / "t")
    write_deltalake(table, pl.DataFrame({"x": [1, 2, 3]}).to_arrow())
    assert pl.scan_delta(table).select(pl.len()).collect().item() == 3  # runtime started here
    # A user config asking for fork is overridden.
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
        runner = task_runner(load_settings(None, {"SERVIO_DASK_ADDRESS": "local"}))
        assert dask.config.get("distributed.worker.multiprocessing-method") == "spawn"
        runner.cluster_kwargs["n_workers"] = 2
        with runner:
            facts = runner.client.run(_worker_facts, table)
    assert len(facts) == 2
    assert all(facts_ == ("SpawnProcess", 3) for facts_ in facts.values()), facts
