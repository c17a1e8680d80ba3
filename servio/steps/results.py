"""What a run did, for machines: the run-results document (the role of dbt's
`run_results.json`) that every command changing the lake writes as
`_servio/runs/<run_id>.json` and `--json` prints. Its shape is the committed JSON Schema
`schemas/run_results.schema.json`; `SCHEMA_VERSION` changes when a field changes meaning or
goes away (new fields may be added within a version).

Exit codes live here too, so the document, the CLI and the README name the same numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from servio.config import ConfigError, Settings
from servio.lake import Lake, LakeBusy
from servio.raw.landing import LandedFile
from servio.schemas.snapshot_tables import CUSTOMER_SEGMENTS
from servio.schemas.tables import DUPLICATE, REFUSED
from servio.steps.backfill import CANCELLED, DONE, FAILED, DateOutcome
from servio.steps.errors import ReconciliationError
from servio.steps.publish import IngestSummary
from servio.steps.sequence import Outcome
from servio.steps.snapshot import SnapshotSummary
from servio.steps.staging import StagedFile

SCHEMA_VERSION: Final = 1

# Exit codes (README "Exit codes"): stable; a scheduler may alert on any non-zero one.
OK: Final = 0
UNEXPECTED: Final = 1  # a servio bug: one line, no traceback; nothing half published
USAGE: Final = 2  # usage or configuration error; nothing was touched
BUSY: Final = 3  # another run holds the lake
RECONCILIATION: Final = 4  # counts do not add up; nothing was published
IO_ERROR: Final = 5  # an I/O failure before the publish; nothing was published
AFTER_PUBLISH: Final = 6  # published, but the Data Docs or the report could not be written
DATA_ALERT: Final = 7  # opt-in: files rejected (--fail-on-rejected) or too many rows quarantined
INTERRUPTED: Final = 130  # backfill: Ctrl-C; the dates not started were cancelled

STATUS: Final[Mapping[int, str]] = {
    OK: "success",
    UNEXPECTED: "error",
    USAGE: "usage_error",
    BUSY: "busy",
    RECONCILIATION: "reconciliation_error",
    IO_ERROR: "io_error",
    AFTER_PUBLISH: "published_with_warnings",
    DATA_ALERT: "data_alert",
    INTERRUPTED: "interrupted",
}

# What the document's `command` says. The served flows (`servio serve`, a work pool) write
# one document per flow run under a command of their own: the same flows called by hand do
# too, and say so under the same name (the flow, not who started it, decides what it did).
RUN, MAINTAIN, BACKFILL = "run", "maintain", "backfill"
SERVE_INGEST, SERVE_SNAPSHOT = "serve-ingest", "serve-snapshot"


def servio_version() -> str:
    try:
        return version("servio")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def settings_fingerprint(settings: Settings) -> str:
    """The SHA-256 of every setting that changes what is computed (not how it runs: buckets,
    Dask, retention) — the settings part of a snapshot's input fingerprint."""
    return hashlib.sha256(settings.computed_json().encode()).hexdigest()


@dataclass(frozen=True)
class Thresholds:
    """When an otherwise successful run exits `DATA_ALERT` (both opt-in)."""

    fail_on_rejected: bool = False
    max_quarantined_rate: float | None = None  # share of rows read, 0…1

    def alerts(self, ingest: IngestSummary | None, staged: Iterable[StagedFile] = ()) -> list[str]:
        """What crossed a threshold, in words (empty: nothing). `--fail-on-rejected` counts
        the files rejected by this run and the files refused for where they are (a FIFO, a
        link out of the raw root, a file outside a source folder): nothing reads a refused
        file until a person moves it, so every run alerts while it lies there. Not deferred
        files (an I/O failure): the next run reads them again by itself."""
        if ingest is None:
            return []
        found = []
        refused = sorted(s.landed.relative_path for s in staged if s.status == REFUSED)
        if self.fail_on_rejected and ingest.files_rejected:
            found.append(f"{ingest.files_rejected} file(s) rejected (--fail-on-rejected)")
        if self.fail_on_rejected and refused:
            shown = ", ".join(refused[:3]) + (", …" if len(refused) > 3 else "")
            found.append(f"{len(refused)} file(s) refused: {shown} (--fail-on-rejected)")
        rate = quarantined_rate(ingest)
        if self.max_quarantined_rate is not None and rate > self.max_quarantined_rate:
            found.append(
                f"{rate:.2%} of the rows read were quarantined, above "
                f"--max-quarantined-rate {self.max_quarantined_rate:g}"
            )
        return found


def quarantined_rate(ingest: IngestSummary) -> float:
    return ingest.rows_quarantined / ingest.rows_read if ingest.rows_read else 0.0


def failure(exc: BaseException) -> tuple[int, bool]:
    """The exit code of a run that raised `exc`, and whether it may have written the lake
    (then its document is written too): one rule for `servio run` and the served flows."""
    if isinstance(exc, LakeBusy):
        return BUSY, False  # it never held the lock
    if isinstance(exc, ConfigError):
        return USAGE, False  # the raw folder vanished since the check: nothing touched
    if isinstance(exc, ReconciliationError):
        return RECONCILIATION, True
    if isinstance(exc, OSError):  # disk full, permissions: the lake is unchanged (RELIABILITY.md)
        return IO_ERROR, True
    return UNEXPECTED, True  # a servio bug; a crash never leaves a partial publication


def first_line(exc: BaseException) -> str:
    """`Type: first line` of an unexpected error (the rest goes to the debug log)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


@dataclass(frozen=True)
class BackfillRecord:
    """What a backfill asked for and what each date became."""

    start: date
    end: date
    parallel: int
    force: bool
    where: str  # "in_process", "server" (one build-snapshot run per date), "flow"
    dates: list[DateOutcome]
    rows: dict[date, dict[str, int]]  # per date: rows of each snapshot table's partition


def backfill_ran(outcomes: Iterable[DateOutcome]) -> bool:
    """Whether a backfill ran a date (took the lake lock): else it wrote nothing, like an idle
    run — every date already done, or cancelled before it started."""
    return any(
        o.outcome not in (DONE, CANCELLED) or (o.outcome == CANCELLED and o.detail)
        for o in outcomes
    )


@dataclass
class RunRecord:
    """Everything the document holds, gathered as the command goes."""

    command: str
    run_id: str
    settings: Settings | None  # None: the configuration could not be read
    started_at: datetime
    staged: list[StagedFile] = field(default_factory=list)
    duplicates: list[LandedFile] = field(default_factory=list)
    ingest: IngestSummary | None = None
    snapshot: SnapshotSummary | None = None
    tables: dict[str, int] | None = None  # rows per curated table after the run
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per step
    maintained: dict[str, dict[str, int]] = field(default_factory=dict)
    report_path: str | None = None
    data_docs_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    error: str | None = None
    changed_lake: bool = False  # whether the run took the lock and wrote
    backfill: BackfillRecord | None = None
    finished_at: datetime | None = None  # set by the first `document`: the file = stdout

    def add(self, outcome: Outcome, seconds: Mapping[str, float]) -> None:
        """What one run of the sequence did (the served flows, `servio maintain`)."""
        self.staged, self.duplicates = list(outcome.staged), list(outcome.discovered.duplicates)
        self.ingest, self.snapshot = outcome.ingest, outcome.snapshot
        self.maintained = dict(outcome.maintained)
        self.data_docs_path = outcome.data_docs_path
        self.warnings += outcome.warnings
        self.seconds.update(seconds)
        self.changed_lake = outcome.locked


def backfill_record(
    settings: Settings,
    run_id: str,
    started_at: datetime,
    asked: tuple[date, date, int, bool, str],
    outcomes: list[DateOutcome],
    seconds: float,
) -> RunRecord:
    """The record of a backfill (`asked`: from, to, parallel, force, where), in process, on a
    server or as its flow: each date's outcome, the rows its snapshot partition holds now."""
    from servio.steps.summary import snapshot_rows, table_row_counts

    start, end, parallel, force, where = asked
    lake = Lake(settings.curated_root)
    rows = {o.as_of: snapshot_rows(lake, settings, o.as_of) for o in outcomes}
    # A date already done was not computed now: its customers are those of its snapshot.
    dates = [
        replace(o, customers=rows[o.as_of].get(CUSTOMER_SEGMENTS.name, 0))
        if o.outcome == DONE
        else o
        for o in outcomes
    ]
    backfill = BackfillRecord(start, end, parallel, force, where, dates, rows)
    record = RunRecord(BACKFILL, run_id, settings, started_at, backfill=backfill)
    record.tables = table_row_counts(lake, settings)
    record.seconds["backfill"] = seconds
    record.changed_lake = backfill_ran(outcomes)
    failed = [o.as_of.isoformat() for o in outcomes if o.outcome == FAILED]
    if failed:
        record.error = f"{len(failed)} date(s) failed: {', '.join(failed)}"
    return record


def backfill_exit_code(outcomes: Iterable[DateOutcome], interrupted: bool = False) -> int:
    """130 after Ctrl-C, 1 when a date failed, else 0 (README "Exit codes")."""
    if interrupted:
        return INTERRUPTED
    return UNEXPECTED if any(o.outcome == FAILED for o in outcomes) else OK


def document(record: RunRecord, exit_code: int) -> dict[str, Any]:
    """The run-results document (schemas/run_results.schema.json). The run ends when it is
    first made: the file written and the `--json` output are the same document."""
    if record.finished_at is None:
        record.finished_at = datetime.now(UTC)
    finished_at = record.finished_at
    settings = record.settings
    ingest, snap = record.ingest, record.snapshot
    return {
        "schema_version": SCHEMA_VERSION,
        "servio_version": servio_version(),
        "command": record.command,
        "run_id": record.run_id,
        "started_at": record.started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "elapsed_seconds": round((finished_at - record.started_at).total_seconds(), 3),
        "exit_code": exit_code,
        "status": STATUS.get(exit_code, "error"),
        "error": record.error,
        "warnings": list(record.warnings),
        "alerts": list(record.alerts),
        "raw_root": settings.raw_root if settings else None,
        "curated_root": settings.curated_root if settings else None,
        "settings_fingerprint": settings_fingerprint(settings) if settings else None,
        "changed_lake": record.changed_lake,
        "files": _files(record.staged, record.duplicates, ingest),
        "totals": _totals(ingest),
        "tables": dict(record.tables) if record.tables is not None else {},
        "snapshot": _snapshot(snap),
        "timings": {step: round(s, 3) for step, s in record.seconds.items()},
        "maintained": {name: dict(c) for name, c in record.maintained.items()},
        "report_path": record.report_path,
        "data_docs_path": record.data_docs_path,
        "backfill": _backfill(record.backfill),
    }


def flow_run_failed(record: RunRecord, exc: BaseException) -> str | None:
    """A served flow run that raised `exc`: its document written (when it may have changed the
    lake) with the code `servio run` would exit with; the write's own problem, if any."""
    code, may_have_written = failure(exc)
    record.error = first_line(exc) if code == UNEXPECTED else str(exc)
    record.changed_lake = may_have_written
    return write(record, code)


def flow_run_done(record: RunRecord) -> str | None:
    """A served flow run that ended: its document (exit 6 when something after the publish
    failed, else 0), written when it changed the lake; the write's own problem, if any."""
    if not record.changed_lake:
        return None  # nothing to write: an ingest run that found every file ingested
    from servio.steps.summary import table_row_counts

    assert record.settings is not None
    counted = None
    try:
        record.tables = table_row_counts(Lake(record.settings.curated_root), record.settings)
    except Exception as exc:  # the counts are worth no failed run: the document says {}
        counted = f"the rows per table could not be counted: {exc}"
    return write(record, AFTER_PUBLISH if record.warnings else OK) or counted


def write(record: RunRecord, exit_code: int) -> str | None:
    """`_servio/runs/<run_id>.json` when the run changed the lake; the problem in words when
    it could not be written (the disk that failed the run): said, and never failing the run."""
    if record.settings is None or not record.changed_lake:
        return None
    try:
        Lake(record.settings.curated_root).write_run_results(
            record.run_id, document(record, exit_code)
        )
    except OSError as exc:
        return f"the run results could not be written: {exc}"
    return None


def _files(
    staged: Iterable[StagedFile], duplicates: Iterable[LandedFile], ingest: IngestSummary | None
) -> list[dict[str, Any]]:
    # The status the ledger recorded wins: a file another run published while this one
    # staged it is recorded as a duplicate.
    recorded = ingest.recorded if ingest is not None else {}
    rows = [
        {
            "path": s.landed.relative_path,
            "source": s.landed.source,
            "sha256": s.landed.sha256,
            "size_bytes": s.landed.size_bytes,
            "status": recorded.get(s.landed.relative_path, s.status),
            "reason": s.reason,
            "rows_read": s.rows_read,
            "rows_valid": s.rows_valid,
            "rows_quarantined": s.rows_quarantined,
        }
        for s in staged
    ]
    rows += [
        {
            "path": d.relative_path,
            "source": d.source,
            "sha256": d.sha256,
            "size_bytes": d.size_bytes,
            "status": DUPLICATE,
            "reason": None,
            "rows_read": 0,
            "rows_valid": 0,
            "rows_quarantined": 0,
        }
        for d in duplicates
    ]
    return sorted(rows, key=lambda row: row["path"])


def _totals(ingest: IngestSummary | None) -> dict[str, Any]:
    if ingest is None:
        ingest = IngestSummary(0, 0, 0, 0, 0, 0, {})
    return {
        "files_ingested": ingest.files_ingested,
        "files_rejected": ingest.files_rejected,
        "files_duplicate": ingest.files_duplicate,
        "files_deferred": ingest.files_deferred,
        "rows_read": ingest.rows_read,
        "rows_valid": ingest.rows_valid,
        "rows_quarantined": ingest.rows_quarantined,
        "quarantined_rate": round(quarantined_rate(ingest), 6),
    }


def _backfill(backfill: BackfillRecord | None) -> dict[str, Any] | None:
    if backfill is None:
        return None
    return {
        "from": backfill.start.isoformat(),
        "to": backfill.end.isoformat(),
        "parallel": backfill.parallel,
        "force": backfill.force,
        "where": backfill.where,
        "dates": [
            {
                "as_of_date": o.as_of.isoformat(),
                "status": o.outcome,
                "customers": o.customers,
                "seconds": round(o.seconds, 3),
                "detail": o.detail or None,
                "rows": dict(backfill.rows.get(o.as_of, {})),
            }
            for o in sorted(backfill.dates, key=lambda o: o.as_of)
        ],
    }


def _snapshot(snap: SnapshotSummary | None) -> dict[str, Any] | None:
    if snap is None or snap.as_of_date is None:
        return None
    return {
        "as_of_date": snap.as_of_date.isoformat(),
        "published": snap.published,
        "customers": snap.customers,
        "actions": {str(k): int(v) for k, v in snap.actions.items()},
        "warnings": list(snap.warnings),
    }
