"""The fault harness's runner: `python -m servio.tools.faults --config X [--no-rules]
[--wait S]` runs the main job's sequence in this process, without Prefect, so a kill test
(SERVIO_KILL_AT, `servio.faults`) does not pay for a server. `--no-rules` checks only the
`required` rule (publishing is under test, not rules; the GX suite costs ~1.5 s a file)."""

from __future__ import annotations

import os
import sys

from servio.steps import sequence
from servio.validation import Validator


def run_without_prefect(
    config_path: str | None, wait_seconds: float = 0.0, validator: Validator | None = None
) -> dict[str, int]:
    """The sequence of `servio run` (every pending file, the latest snapshot, the Data Docs),
    with the Great Expectations suite unless another validator is given."""
    from servio.config import load_settings
    from servio.steps.context import RunContext

    ctx = RunContext.start(load_settings(config_path), validator=validator)
    outcome = sequence.run(ctx, sequence.Plan(wait_seconds=wait_seconds))
    assert outcome.ingest is not None
    return {"files_ingested": outcome.ingest.files_ingested, "files_seen": outcome.discovered.files}


def main(argv: list[str]) -> int:
    from servio.lake import LakeBusy
    from servio.validation import RequiredOnlyValidator

    validator = RequiredOnlyValidator() if "--no-rules" in argv else None
    config = argv[argv.index("--config") + 1] if "--config" in argv else None
    wait = float(argv[argv.index("--wait") + 1]) if "--wait" in argv else 0.0
    try:
        print(run_without_prefect(config, wait, validator), flush=True)
    except LakeBusy as exc:
        print(exc, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover - used by tests/faults_harness.py
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    sys.exit(main(sys.argv[1:]))
