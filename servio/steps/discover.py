"""Step 1, discover: which landed files this run stages, decided by content hash against the
ingest ledger — every pending file of the raw zone, or the files an event names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from servio import faults
from servio.config import Settings
from servio.lake import Lake
from servio.raw import landing
from servio.raw.landing import FileProblem, LandedFile
from servio.raw.paths import landed_file
from servio.schemas.sources import SOURCE_NAMES, SOURCES
from servio.schemas.tables import INGEST_LEDGER, REFUSED
from servio.steps.context import RunContext
from servio.transforms.ledger import is_remembered

UNKNOWN_SOURCE = FileProblem(
    REFUSED,
    "unknown_source",
    "not in a source folder: the folder under the raw root must be "
    + " or ".join(f"{name}/" for name in SOURCE_NAMES),
)


@dataclass(frozen=True)
class Discovered:
    """Files to stage (those discovery could not read too: staging records why, once), and
    files whose content the ledger knows under another name (recorded as duplicates).
    Files the ledger holds with this very path and content are in neither."""

    todo: list[LandedFile] = field(default_factory=list)
    duplicates: list[LandedFile] = field(default_factory=list)

    @property
    def files(self) -> int:
        return len(self.todo) + len(self.duplicates)


def discover(ctx: RunContext, paths: Sequence[str] | None = None) -> Discovered:
    """The pending files of the raw zone, or (`paths`, relative to the raw root or absolute
    inside it) the files an event names; paths outside the root are refused (`UnsafePath`)."""
    raw_root = ctx.settings.raw_root
    found = (
        landing.discover(raw_root)
        if paths is None
        else [landed_file(raw_root, path) for path in sorted(paths)]
    )
    discovered = classify(found, ctx.lake)
    faults.checkpoint("discovered", files=discovered.todo + discovered.duplicates)
    return discovered


def pending_files(settings: Settings, lake: Lake) -> Discovered:
    """Every pending file of the raw zone (for the watcher's scan and catch-up)."""
    return classify(landing.discover(settings.raw_root), lake)


def classify(found: Iterable[LandedFile], lake: Lake) -> Discovered:
    """Hashes decide, not names: content the ledger remembers is not staged again."""
    ledger = remembered_files(lake)
    known_hashes = set(ledger["sha256"].to_list())
    known_paths = set(zip(ledger["source_file"].to_list(), ledger["sha256"].to_list(), strict=True))
    result = Discovered()
    seen: set[str] = set()
    for landed in found:
        if problem_of(landed) is not None or landed.sha256 is None:
            result.todo.append(landed)
            continue
        if (landed.relative_path, landed.sha256) in known_paths:
            continue  # this very file was handled by an earlier run
        if landed.sha256 in known_hashes or landed.sha256 in seen:
            result.duplicates.append(landed)
            continue
        seen.add(landed.sha256)
        result.todo.append(landed)
    return result


def remembered_files(lake: Lake) -> pl.DataFrame:
    """(source_file, sha256) of the ledger's remembered rows (`is_remembered`)."""
    return (
        lake.scan(INGEST_LEDGER)
        .filter(is_remembered(pl.col("status"), pl.col("reason")))
        .select("source_file", "sha256")
        .collect()
    )


def problem_of(landed: LandedFile) -> FileProblem | None:
    """Why the file is not read this run (its location or an I/O failure), if it is not."""
    if landed.problem is None and landed.source not in SOURCES:
        return UNKNOWN_SOURCE
    return landed.problem


def unsettled(settings: Settings, lake: Lake) -> list[LandedFile]:
    """Readable landed files no run has handled in any way yet (not in the ledger with this
    path and content, whatever its verdict), by path: what the watcher, the catch-up of
    `servio serve` and `servio status` call pending. A refused or deferred file the ledger
    recorded waits for the next run without asking for one."""
    found = pending_files(settings, lake)
    ledger = lake.scan(INGEST_LEDGER).select("source_file", "sha256").collect()
    seen = set(zip(ledger["source_file"].to_list(), ledger["sha256"].to_list(), strict=True))
    return sorted(
        (
            f
            for f in (*found.todo, *found.duplicates)
            if f.sha256 and (f.relative_path, f.sha256) not in seen
        ),
        key=lambda f: f.relative_path,
    )
