"""`prefect.yaml` as Prefect users run it in production: a real `prefect server start` on
loopback, a process work pool, `prefect deploy --all` from the repository, and a worker that
picks an ingest run up and ingests the landed files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import httpx
import pytest

from servio.flows.watch import wait_until
from servio.tools.generate import GenerateOptions, generate
from servio.tools.harness import free_port, process_group
from tests.served import table

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_prefect_yaml_deploys_to_a_work_pool_and_a_worker_runs_the_ingest(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_LOGGING_LEVEL": "INFO",
        # The worker looks for runs every second, not every 10 s: less waiting, same path.
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }
    config = tmp_path / "servio.toml"
    config.write_text(f'raw_root = "{tmp_path / "raw"}"\ncurated_root = "{tmp_path / "curated"}"\n')
    env["SERVIO_CONFIG"] = str(config)
    prefect = str(BIN / "prefect")
    server_args = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with process_group(server_args, env, tmp_path / "server.log", cwd=REPO):
        generate(  # while the server starts
            tmp_path / "raw",
            GenerateOptions(customers=40, days=10, seed=3, end_date=date(2026, 11, 20)),
        )
        assert wait_until(lambda: _healthy(url), 120, interval=0.25), (
            tmp_path / "server.log"
        ).read_text()

        def cli(*args: str) -> str:
            done = subprocess.run(
                [prefect, "--no-prompt", *args],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        cli("work-pool", "create", "servio", "--type", "process")
        from prefect.client.orchestration import SyncPrefectClient

        # The worker runs from here on, as in production (it starts while the deployments
        # are registered, and picks the run up once there is one).
        worker_args = [prefect, "worker", "start", "--pool", "servio", "--limit", "2"]
        worker = process_group(worker_args, env, tmp_path / "worker.log", cwd=REPO)
        with worker, SyncPrefectClient(url) as client:
            cli("deploy", "--all")
            ingest = client.read_deployment_by_name("ingest-file/servio-ingest")
            assert ingest.work_pool_name == "servio"
            assert ingest.parameters["config_path"] == str(config)
            described = ingest.parameter_openapi_schema["properties"]
            assert all(p.get("description") for p in described.values()), described
            assert ingest.concurrency_limit == 2 or (
                ingest.global_concurrency_limit is not None
                and ingest.global_concurrency_limit.limit == 2
            )
            snapshot = client.read_deployment_by_name("build-snapshot/servio-snapshot")
            assert snapshot.work_pool_name == "servio"
            run = client.create_flow_run_from_deployment(ingest.id, name="ingest by hand")

            def finished() -> bool:
                state = client.read_flow_run(run.id).state
                return state is not None and state.is_final()

            assert wait_until(finished, 300, interval=0.5), (tmp_path / "worker.log").read_text()
            state = client.read_flow_run(run.id).state
            assert state is not None and state.is_completed(), (
                state,
                (tmp_path / "worker.log").read_text(),
            )
    ledger = table(tmp_path / "curated", "ingest_ledger")
    landed = sorted(
        p.relative_to(tmp_path / "raw").as_posix()
        for p in (tmp_path / "raw").rglob("*")
        if p.is_file() and p.parent != tmp_path / "raw"
    )
    assert sorted(ledger["source_file"].to_list()) == landed
    shutil.rmtree(tmp_path / "prefect-home", ignore_errors=True)
