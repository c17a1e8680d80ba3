"""Housekeeping of the lake after publications: compaction, Delta checkpoints and vacuum,
once enough publications have piled up small files, or on demand (`servio maintain`)."""

from __future__ import annotations

from servio.steps.context import RunContext


def maintain_if_due(ctx: RunContext) -> None:
    """Compact, checkpoint and vacuum once the publication record holds enough small files
    (`lake.MAINTAIN_AFTER_FILES`). Call under the lock."""
    if ctx.lake.maintenance_due():
        ctx.lake.maintain(ctx.settings.vacuum_retention_hours)


def maintain_lake(ctx: RunContext) -> dict[str, dict[str, int]]:
    """Maintain every table now (`servio maintain`); files compacted and deleted per table."""
    return ctx.lake.maintain(ctx.settings.vacuum_retention_hours)
