"""Fault injection for the reliability tests: named kill points and a Prefect-free runner.

`checkpoint(name)` is a no-op unless `SERVIO_KILL_AT=<name>` (or `<name>:<n>`, the n-th hit
in this process) names it; then the process SIGKILLs itself — no cleanup, no `finally`,
exactly like a power cut or the OOM killer. `python -m servio.faults --config X` runs the
same steps as `flows/run.py` without Prefect, so a kill test does not pay for a server.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servio.validation import Validator

KILL_AT = "SERVIO_KILL_AT"
PAUSE_AT = "SERVIO_PAUSE_AT"  # <name>:<seconds>: sleep there (hold the lock for a while)
_hits: Counter[str] = Counter()

# Every checkpoint in the code base, in the order a run meets them (tests iterate this).
CHECKPOINTS = (
    "lock_taken",  # storage.Lake.lock: the lock is ours
    "file_staged",  # pipeline._write_stage: one staged Parquet file written
    "partition_staged",  # storage.Lake._stage: one new data file staged, outside every table
    "before_publication_commit",  # storage.Lake.publish: all staged, plan not yet written
    "after_publication_commit",  # storage.Lake.publish: plan written (commit point), no commit
    "before_table_commit",  # storage.Lake._apply: a table's files in its folder, not committed
    "between_table_commits",  # storage.Lake._apply: after each table's Delta commit (or skip)
    "after_publication_record",  # storage.Lake._apply: publications row added, plan still there
    "after_ingest_publish",  # pipeline.publish_ingest: tables + ledger published
    "after_snapshot_publish",  # pipeline.build_snapshots: snapshot partitions published
)


def checkpoint(name: str) -> None:
    """Die here (SIGKILL) when SERVIO_KILL_AT asks for this point; sleep if SERVIO_PAUSE_AT does."""
    pause = os.environ.get(PAUSE_AT)
    if pause and pause.partition(":")[0] == name:
        time.sleep(float(pause.partition(":")[2] or 1))
    wanted = os.environ.get(KILL_AT)
    if not wanted:
        return
    target, _, nth = wanted.partition(":")
    if target != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def run_without_prefect(
    config_path: str | None, wait_seconds: float = 0.0, validator: Validator | None = None
) -> dict[str, int]:
    """The steps of `flows.run.run_pipeline` (lock, recover, stage, publish, snapshot), with
    the Great Expectations suite unless another validator is given."""
    from servio.config import load_settings
    from servio.pipeline import new_run_id, run_steps
    from servio.storage import Lake
    from servio.validation.gx import GxValidator

    settings = load_settings(config_path)
    lake = Lake(settings.curated_root)
    seen, ingest = run_steps(settings, lake, new_run_id(), validator or GxValidator(), wait_seconds)
    return {"files_ingested": ingest.files_ingested, "files_seen": seen}


def main(argv: list[str]) -> int:
    from servio.storage import LakeBusy
    from servio.validation import RequiredOnlyValidator

    # Kill tests exercise publishing, not rules; the GX suite costs ~1.5 s per file.
    validator = RequiredOnlyValidator() if "--no-rules" in argv else None
    config = argv[argv.index("--config") + 1] if "--config" in argv else None
    wait = float(argv[argv.index("--wait") + 1]) if "--wait" in argv else 0.0
    try:
        print(run_without_prefect(config, wait, validator), flush=True)
    except LakeBusy as exc:
        print(exc, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover - used by tests/test_kill_anywhere.py
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    sys.exit(main(sys.argv[1:]))
