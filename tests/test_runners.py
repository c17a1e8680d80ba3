"""Where flow tasks run: threads by default, a Dask cluster when the settings name one."""

from __future__ import annotations

import os

import pytest

from flows.runners import task_runner, with_runner
from servio.config import ConfigError, Settings, load_settings


def test_without_an_address_the_flow_keeps_its_own_runner() -> None:
    from flows.run import run_pipeline

    settings = Settings()
    assert task_runner(settings) is None
    assert with_runner(run_pipeline, settings) is run_pipeline


def test_a_scheduler_address_gives_a_dask_runner_for_that_cluster() -> None:
    from prefect_dask import DaskTaskRunner

    from flows.run import run_pipeline

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
