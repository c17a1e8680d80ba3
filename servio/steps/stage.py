"""Step 2, stage the landed files, in two steps: `read_file` (`steps.read`, one task per file)
reads a file in chunks and parks each standardised chunk, with its text, in the run's staging
(`steps.staging`); `check_files` (`steps.check`, once per source) checks the parts of every file
of a source with the validator in as few batches as memory allows, then writes each file's
curated rows and quarantine rows as Parquet parts. Each file is its own boundary, in both steps
(`steps.boundary`). `stage_file` is both for one file."""

from __future__ import annotations

from servio.raw.landing import LandedFile
from servio.steps.check import check_files
from servio.steps.context import RunContext
from servio.steps.read import read_file
from servio.steps.staging import StagedFile


def stage_file(ctx: RunContext, landed: LandedFile) -> StagedFile:
    """Read, standardise and validate one file; park its valid and quarantined rows in
    staging (`steps.boundary` says what may come out of it)."""
    [staged] = check_files(ctx, [read_file(ctx, landed)])
    return staged
