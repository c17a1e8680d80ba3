"""`servio serve` in a child process against a test Prefect server, and what tests read
back from its lake and from the server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from servio.flows.watch import wait_until
from servio.tools.generate import GenerateOptions, generate


class Served:
    """`servio serve` (deployments + watcher) in a child process against the test server."""

    def __init__(self, root: Path, api_url: str, poll: float = 0.5) -> None:
        self.root = root
        self.config = root / "servio.toml"
        self.env = {**os.environ, "PREFECT_API_URL": api_url}
        self.env.pop("PREFECT_LOGGING_LEVEL", None)  # as a user starts it: runs log at INFO
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.poll = poll
        self.command = str(Path(sys.executable).parent / "servio")

    @property
    def log(self) -> Path:
        return self.root / f"serve-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [self.command, "serve", "--config", str(self.config), "--poll", str(self.poll)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the flow runs die with it
            )
        assert wait_until(lambda: "being served" in self.log.read_text(), 90), self.logs()
        # the warm processes have imported everything (slow on a loaded machine)
        ready = "warm processes ready"
        assert wait_until(lambda: ready in self.log.read_text(), 240), self.logs()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def run_processes(self) -> list[Any]:
        """The flow-run processes `serve` started (its children), alive now."""
        import psutil

        assert self.process is not None
        try:
            children = psutil.Process(self.process.pid).children(recursive=False)
        except psutil.NoSuchProcess:
            return []
        return [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

    def executing(self) -> list[Any]:
        """The processes of `serve` executing a run now: those a Pending or Running run names
        as its `infrastructure_pid` (host:pid; the warm processes record it when they claim)."""
        from prefect.client.schemas.objects import StateType

        busy = {
            int(r.infrastructure_pid.rsplit(":", 1)[-1])
            for r in flow_runs(states=(StateType.PENDING, StateType.RUNNING))
            if r.infrastructure_pid
        }
        return [p for p in self.run_processes() if p.pid in busy]

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.glob("serve-*.log")))


@contextlib.contextmanager
def serving(root: Path, exports: GenerateOptions, settings: str = "") -> Iterator[Served]:
    """`servio serve` against the test server (`PREFECT_API_URL`) for a lake under `root`:
    `root/exports` generated with `exports`, an empty `root/raw` to drop them into, and
    `root/servio.toml` with the two roots and `settings` (TOML lines). Stopped at the end."""
    from prefect.settings import PREFECT_API_URL

    generate(root / "exports", exports)
    for source in ("interactions", "surveys"):
        (root / "raw" / source).mkdir(parents=True)
    (root / "servio.toml").write_text(
        f'raw_root = "{root / "raw"}"\ncurated_root = "{root / "curated"}"\n{settings}'
    )
    server = Served(root, str(PREFECT_API_URL.value()))
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.kill(signal.SIGTERM)


def ingested(curated: Path, relative: str) -> bool:
    """The ledger records the file (ingested, rejected, duplicate: handled)."""
    ledger = table(curated, "ingest_ledger")
    return not ledger.is_empty() and relative in ledger["source_file"].to_list()


def table(curated: Path, name: str) -> pl.DataFrame:
    """The Delta table's current version (empty before its first publication)."""
    folder = curated / name
    if not (folder / "_delta_log").exists():
        return pl.DataFrame()
    return pl.read_delta(str(folder))


def flow_runs(
    names: tuple[str, ...] = ("ingest-file", "build-snapshot"), states: tuple[Any, ...] = ()
) -> list[Any]:
    """Every flow run of these flows on the test server (only those in these state types,
    when given). Tests poll this several times a second while runs pile up: the server
    filters, so a look costs what the few runs it returns cost, not every run so far."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    by_state = (
        FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states))))
        if states
        else None
    )
    with get_client(sync_client=True) as client:
        return list(
            client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=list(names))),
                flow_run_filter=by_state,
            )
        )


def run_logs(run_id: Any) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        return list(client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))))
