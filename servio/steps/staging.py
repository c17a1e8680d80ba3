"""Where a run parks a file between reading, checking and publishing: `StagedFile` (what
staging made of one file) and its parts under `_servio/staging/<run_id>/files/<sha256>/`,
written by `write_stage` (a failure to write them stops the run: `StagingError`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import polars as pl

from servio import faults
from servio.raw.landing import LandedFile
from servio.steps.context import RunContext
from servio.steps.errors import StagingError

# Staged files are read once, by this run: lz4 writes about 2× faster than the zstd of
# published files (measured on 365 daily partitions of 1M rows: 2.1 s against 3.9 s).
INTERMEDIATE_COMPRESSION: Final = "lz4"
# Staged valid rows are sorted by partition and written in row groups of this many rows, so
# each merge group's scan skips, by row-group statistics, the rows of other partitions (a
# re-export spans the whole year; unsorted, every group would read all of it).
STAGED_ROW_GROUP_ROWS = 131_072
# Prefix of a column's text in a checked part (beside its typed value of the same name).
TEXT_PREFIX: Final = "__text__."


@dataclass(frozen=True)
class StagedFile:
    """One landed file after parsing and validation, its outputs parked in staging."""

    landed: LandedFile
    status: str  # ingested, rejected, refused or deferred
    reason: str | None
    rows_read: int
    rows_valid: int
    rows_quarantined: int
    valid_path: str | None  # glob of the staged Parquet parts (valid-00000.parquet, …)
    quarantine_path: str | None  # glob of quarantine parts, or the rejected file's one row
    validation_path: str | None = None  # what the validator kept for the Data Docs
    checked_path: str | None = None  # read but not yet checked: glob of its checked parts


def staging_folder(ctx: RunContext, landed: LandedFile) -> str:
    assert landed.sha256 is not None
    return ctx.lake.staging_file(ctx.run_id, "files", landed.sha256)


def staged_path(ctx: RunContext, landed: LandedFile, name: str) -> str:
    assert landed.sha256 is not None
    return ctx.lake.staging_file(ctx.run_id, "files", landed.sha256, name)


def write_stage(ctx: RunContext, landed: LandedFile, kind: str, frame: pl.DataFrame) -> str:
    assert landed.sha256 is not None
    try:
        path = ctx.lake.staging_file(ctx.run_id, "files", landed.sha256, f"{kind}.parquet")
        faults.checkpoint("writing_staged_file", landed=landed)
        frame.write_parquet(
            path, compression=INTERMEDIATE_COMPRESSION, row_group_size=STAGED_ROW_GROUP_ROWS
        )
    except (pl.exceptions.ComputeError, OSError) as exc:  # polars reports a full disk as either
        raise StagingError.because(
            exc, f"cannot stage {landed.relative_path} ({exc}); nothing was published"
        ) from exc
    faults.checkpoint("file_staged")
    return path
