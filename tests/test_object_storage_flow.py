"""The Prefect flow `servio-run`, unchanged, on s3:// roots: it publishes, draws the report
and Data Docs into the local site folder (real GX suite), and its artifacts carry no
credential."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults_harness import make_exports
from tests.s3server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, objects, s3_environment, upload_tree

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with s3_environment(tmp_path_factory.mktemp("aws"), ("raw", "lake")):
        yield


def test_the_run_flow_on_s3_publishes_and_its_artifacts_hold_no_credential(
    aws: None, prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from servio.flows.run import run_pipeline

    monkeypatch.chdir(tmp_path)
    make_exports(tmp_path / "exports")
    prefix = f"flow-{uuid.uuid4().hex[:8]}"
    upload_tree(tmp_path / "exports", "raw", prefix)
    config = tmp_path / "servio.toml"
    config.write_text(f'raw_root = "s3://raw/{prefix}"\ncurated_root = "s3://lake/{prefix}"\n')

    summary = run_pipeline(str(config))

    assert summary.curated_root == f"s3://lake/{prefix}"
    assert summary.ingest.files_ingested == 7
    assert summary.snapshot.customers > 0
    assert summary.report_path is not None
    report = Path(summary.report_path).resolve()
    assert report == tmp_path / "servio-site" / "lake" / prefix / "report.html"
    assert str(summary.snapshot.as_of_date) in report.read_text(encoding="utf-8")
    assert any("/customer_segments/_delta_log/" in k for k in objects("lake", prefix))
    assert summary.data_docs_path is not None
    assert Path(summary.data_docs_path).resolve().is_relative_to(tmp_path / "servio-site")

    async def artifacts() -> list[str]:
        async with get_client() as client:
            return [str(a.model_dump()) for a in await client.read_artifacts()]

    found = asyncio.run(artifacts())
    assert any(prefix in text or "files ingested" in text for text in found)
    for text in found:
        assert SECRET_ACCESS_KEY not in text
        assert ACCESS_KEY_ID not in text
