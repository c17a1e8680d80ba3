"""Stage, first step: `read_file` (one task per file) reads a landed file in chunks and parks
each standardised chunk, with its text, in the run's staging as a `checked-NNNNN.parquet` part
for `steps.check`. The file is its own boundary (`steps.boundary`)."""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace

import polars as pl

from servio import faults
from servio.raw import landing
from servio.raw.landing import FileRejected, LandedFile
from servio.schemas.raw import SOURCE_ROW
from servio.schemas.sources import SOURCES
from servio.schemas.tables import INGESTED
from servio.steps.boundary import Step, at_boundary, record_range, unstaged
from servio.steps.context import RunContext
from servio.steps.discover import problem_of
from servio.steps.staging import TEXT_PREFIX, StagedFile, staged_path, write_stage
from servio.transforms import standardise

log = logging.getLogger("servio.steps.stage")  # the stage step's log (see steps.boundary)


def read_file(ctx: RunContext, landed: LandedFile) -> StagedFile:
    """Read and standardise one file chunk by chunk into `checked-NNNNN.parquet` parts, for
    `check_files` (`steps.boundary` says what may come out of it)."""
    problem = problem_of(landed)
    if problem is not None:
        log.warning("%s %s: %s", landed.relative_path, problem.status, problem.code)
        return unstaged(landed, problem.status, problem.code, problem.detail)
    step = Step()

    def read() -> StagedFile:
        ctx.validator.prepare()  # e.g. GX's import, meanwhile, for check_files
        # An object is downloaded once: staging reads a file more than once when it is big.
        with landing.local_copy(landed) as readable:
            staged = _read(ctx, readable, step)
        step("checking that the file did not change while it was read")
        landing.check_unchanged(landed)
        return replace(staged, landed=landed)

    return at_boundary(ctx, landed, step, read)


def _read(ctx: RunContext, landed: LandedFile, step: Step) -> StagedFile:
    """Standardise the file chunk by chunk (`RunContext.chunk_rows_of` rows at a time), each
    chunk's typed values and text to its own Parquet part, so memory is bounded by a chunk."""
    contract = SOURCES[landed.source].contract(ctx.settings.catalog)
    step("reading the file")
    reader = landing.read_raw_chunks(
        landed, ctx.chunk_rows_of(len(contract.fields)), contract.names
    )
    first = next(reader)
    faults.checkpoint("file_read", landed=landed)
    missing = standardise.missing_required(first.columns, contract)
    if missing:
        raise FileRejected(
            "missing_column", f"required column(s) {', '.join(missing)} not in the header"
        )
    rows_read = 0
    chunks = itertools.chain([first], reader)
    del first
    for part, raw in enumerate(chunks):
        step(f"standardising records {record_range(raw)}")
        faults.checkpoint("standardising", landed=landed)
        typed = standardise.standardise(raw.lazy(), contract, ctx.settings.source_timezone)
        # The text is kept beside the typed values: a failing row's quarantine record and its
        # type failures quote it.
        text = raw.lazy().select(pl.all().exclude(SOURCE_ROW).name.prefix(TEXT_PREFIX))
        checked = pl.concat([typed, text], how="horizontal").collect()
        step(f"writing the staged rows of records {record_range(raw)}")
        write_stage(ctx, landed, f"checked-{part:05d}", checked)
        rows_read += raw.height
        step("reading the file")
    checked_path = staged_path(ctx, landed, "checked-*.parquet")
    return StagedFile(landed, INGESTED, None, rows_read, 0, 0, None, None, None, checked_path)
