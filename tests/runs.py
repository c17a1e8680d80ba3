"""Runs of the sequence for tests, without Prefect: a `RunContext` with the fields a test
swaps (the validator, the chunk size, the ingestion time), then `sequence.run`."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from servio.config import Settings, load_settings
from servio.steps import sequence
from servio.steps.context import RunContext
from servio.validation import RequiredOnlyValidator, Validator

# Where publishing, storage or faults are under test and not the rules: the GX suite costs
# about 1.5 s a file, the `required` checks nothing.
REQUIRED_ONLY = RequiredOnlyValidator()
# `servio run` without rendering the Data Docs (seconds of GX per run; their own tests render).
WITHOUT_DOCS = sequence.Plan(data_docs=False)


def settings_of(config: Path | str | Settings) -> Settings:
    return config if isinstance(config, Settings) else load_settings(str(config))


def context(
    config: Path | str | Settings,
    validator: Validator | None = None,
    started_at: datetime | None = None,
    **fields: Any,
) -> RunContext:
    ctx = RunContext.start(settings_of(config), validator=validator, **fields)
    return ctx if started_at is None else replace(ctx, started_at=started_at)


def run(
    config: Path | str | Settings,
    validator: Validator | None = None,
    plan: sequence.Plan = WITHOUT_DOCS,
    **fields: Any,
) -> sequence.Outcome:
    """`servio run`'s sequence: every pending file and the latest snapshot."""
    return sequence.run(context(config, validator, **fields), plan)
