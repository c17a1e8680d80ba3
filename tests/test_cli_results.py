"""`servio` as a scheduler drives it (issue #21): the run-results document (`--json` and
`_servio/runs/<run_id>.json`) validates against the committed JSON Schema, every documented
exit code is produced, no traceback reaches the terminal, `--version` and `-h` everywhere, a
busy lake and a run with nothing to do are answered without starting Prefect.

Exit codes 1, 4 and 5 of `run` come from the flow; here a stand-in raising the error it would
raise is handed to the command (`Seams`, Click's context object: no module is patched), so
what is tested is the command's answer (the errors themselves
are raised by the steps' own tests: test_disk_errors.py, test_sequence.py). Codes 0, 6 and 7
come from the real Prefect flow (e2e)."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from servio.cli import app
from servio.cli.app import Seams
from servio.lake.lake import LOCK, Lake
from servio.steps import results
from tests.run_results import valid, written
from tests.test_hostile_corpus import COLUMNS, csv_text, good_row, land

_valid = valid


def _json(stdout: str) -> dict[str, Any]:
    return _valid(json.loads(stdout))


def _reattach_closed_log_streams() -> None:
    """A real flow run inside `CliRunner` (the e2e test) leaves Prefect's console handler on
    that invocation's stream, closed once it returns; a later invocation in this process that
    logs a warning would then print a "Logging error" traceback no terminal ever shows (a
    real `servio` process keeps one stderr). Point such handlers at the current stderr."""
    import logging
    import sys

    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if isinstance(handler, logging.StreamHandler) and getattr(stream, "closed", False):
            handler.stream = sys.stderr  # not setStream: it flushes the closed one
            console = getattr(handler, "console", None)  # Prefect's handler prints with Rich
            if console is not None:
                console.file = sys.stderr


def _invoke(*args: str, flow: Callable[..., Any] | None = None) -> Any:
    """`servio …` in this process; `flow` stands in for the servio-run flow (the `Seams`
    the command takes as Click's context object)."""
    _reattach_closed_log_streams()
    obj = Seams(run_flow=flow) if flow is not None else None
    result = CliRunner().invoke(app, list(args), obj=obj)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


_runs = written


def _no_flow(**_: Any) -> None:
    """In place of the flow where Prefect's flow must not be reached."""
    raise AssertionError("the Prefect flow was started")


def _flow_raising(error: Callable[[], BaseException]) -> Callable[..., None]:
    def failing(**_: Any) -> None:
        raise error()

    return failing


# ---------------------------------------------------------------------------------------
# --version, -h


def test_version_is_printed() -> None:
    result = _invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"servio {results.servio_version()}"


def _commands() -> list[str]:
    group = get_command(app)
    commands = getattr(group, "commands", {})
    assert "run" in commands
    return sorted(commands)


@pytest.mark.parametrize("command", ["", *_commands()])
def test_dash_h_is_help_everywhere(command: str) -> None:
    args = [command, "-h"] if command else ["-h"]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--help" in result.output


# ---------------------------------------------------------------------------------------
# 2: usage or configuration


def test_a_bad_configuration_exits_2_with_a_document_naming_the_key(tmp_path: Path) -> None:
    config = land(tmp_path, [], "bad")
    config.write_text(config.read_text() + "window_days = 0\n")
    result = _invoke("run", "--config", str(config), "--json")
    assert result.exit_code == results.USAGE
    doc = _json(result.stdout)
    assert doc["status"] == "usage_error" and "window_days" in doc["error"]
    assert "window_days" in result.stderr  # the human message, off stdout
    assert not (tmp_path / "curated").exists()


def test_a_missing_raw_folder_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "servio.toml"
    config.write_text(f'raw_root = "{tmp_path / "nope"}"\ncurated_root = "{tmp_path / "c"}"\n')
    result = _invoke("run", "--config", str(config))
    assert result.exit_code == results.USAGE
    assert "raw_root" in result.output and "does not exist" in result.output


def test_a_quarantine_rate_outside_0_1_is_a_usage_error(tmp_path: Path) -> None:
    config = land(tmp_path, [], "rate")
    result = _invoke("run", "--config", str(config), "--max-quarantined-rate", "1.5")
    assert result.exit_code == results.USAGE


# ---------------------------------------------------------------------------------------
# 3: busy, answered before Prefect


def _hold_lock(curated: Path, pid: int | None = None) -> None:
    lake = Lake(curated)
    holder = {"run_id": "other-run", "pid": pid or os.getpid(), "host": socket.gethostname()}
    assert lake.store.create_json(LOCK, holder)


def test_a_busy_lake_exits_3_before_prefect_starts(tmp_path: Path) -> None:
    config = land(tmp_path, [], "busy")
    _hold_lock(tmp_path / "curated")
    result = _invoke("run", "--config", str(config), "--json", flow=_no_flow)
    assert result.exit_code == results.BUSY, result.output
    doc = _json(result.stdout)
    assert doc["status"] == "busy" and "other-run" in doc["error"]
    assert "busy" in result.stderr
    assert _runs(tmp_path / "curated") == []  # nothing changed: nothing written
    plain = _invoke("run", "--config", str(config), flow=_no_flow)
    assert plain.exit_code == results.BUSY and "is busy" in plain.output


def test_the_lock_of_a_dead_process_is_not_busy(tmp_path: Path) -> None:
    """A lock left by a dead process is taken over by the run: not answered as busy."""
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    config = land(tmp_path, [], "dead")
    _hold_lock(tmp_path / "curated", int(dead.stdout))
    reached = _flow_raising(lambda: RuntimeError("reached the flow"))
    result = _invoke("run", "--config", str(config), flow=reached)
    assert result.exit_code == results.UNEXPECTED  # the (fake) flow ran: not answered busy
    assert "reached the flow" in result.output


# ---------------------------------------------------------------------------------------
# 1, 4, 5: what the flow raises, answered in one line


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (lambda: RuntimeError("boom\nsecond line"), results.UNEXPECTED, "boom"),
        (
            lambda: __import__("servio.steps.errors").steps.errors.ReconciliationError(
                "rows_read 10 != valid 9 + quarantined 0"
            ),
            results.RECONCILIATION,
            "rows_read 10",
        ),
        (
            lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
            results.IO_ERROR,
            os.strerror(errno.ENOSPC),
        ),
    ],
    ids=["unexpected", "reconciliation", "io"],
)
def test_a_failed_run_exits_with_its_code_and_no_traceback(
    tmp_path: Path,
    error: Callable[[], BaseException],
    code: int,
    words: str,
) -> None:
    config = land(tmp_path, [], "fail")
    flow = _flow_raising(error)
    result = _invoke("run", "--config", str(config), "--json", flow=flow)
    assert result.exit_code == code, result.output
    doc = _json(result.stdout)
    assert doc["exit_code"] == code and words in (doc["error"] or "")
    assert words in result.stderr
    [written] = _runs(tmp_path / "curated")  # a run that may have written says so
    assert _valid(json.loads(written.read_text()))["run_id"] == doc["run_id"]
    human = _invoke("run", "--config", str(config), flow=flow)
    assert human.exit_code == code and words in " ".join(human.output.split())
    assert "second line" not in human.output


# ---------------------------------------------------------------------------------------
# 0, 7, and a run with nothing to do: the real flow


def _rejected_file(raw: Path) -> None:
    """A file that is rejected whole: a repeated contract column."""
    bad = raw / "interactions" / "repeated.csv"
    header = [*COLUMNS, "channel"]
    rows = [[*good_row("rep", k).values(), "chat"] for k in range(2)]
    bad.write_text(csv_text(header, rows))


def _bad_rows_file(raw: Path) -> None:
    rows = [good_row("q", k) for k in range(4)]
    rows[0]["currency"] = "USD"  # quarantined: another currency
    rows[1]["started_at"] = "yesterday"
    (raw / "interactions" / "quarantined.csv").write_text(
        csv_text(list(COLUMNS), [[r[c] for c in COLUMNS] for r in rows])
    )


@pytest.mark.e2e
def test_run_results_and_the_opt_in_exit_7(tmp_path: Path, prefect_harness: None) -> None:
    config = land(tmp_path, [], "results")
    raw, curated = tmp_path / "raw", tmp_path / "curated"
    _rejected_file(raw)
    first = _invoke("run", "--config", str(config), "--json", "--fail-on-rejected")
    assert first.exit_code == results.DATA_ALERT, first.output
    doc = _json(first.stdout)
    assert doc["status"] == "data_alert" and "rejected" in doc["alerts"][0]
    assert doc["changed_lake"] is True
    statuses = {f["path"]: f["status"] for f in doc["files"]}
    assert statuses == {
        "interactions/clean.csv": "ingested",
        "interactions/repeated.csv": "rejected",
    }
    assert doc["totals"]["files_ingested"] == 1 and doc["totals"]["files_rejected"] == 1
    assert doc["tables"]["interactions"] == 5
    assert doc["snapshot"]["published"] is True and doc["snapshot"]["customers"] > 0
    assert {"discover", "read_file", "check_files", "publish_ingest", "build_snapshot"} <= set(
        doc["timings"]
    )
    [written] = _runs(curated)
    assert written.name == f"{doc['run_id']}.json"
    on_disk = _valid(json.loads(written.read_text()))
    assert {k: v for k, v in on_disk.items() if k != "finished_at"} == {
        k: v for k, v in doc.items() if k != "finished_at"
    }
    assert "alert:" in first.stderr

    _bad_rows_file(raw)
    quarantined = _invoke(
        "run", "--config", str(config), "--quiet", "--max-quarantined-rate", "0.2"
    )
    assert quarantined.exit_code == results.DATA_ALERT, quarantined.output
    words = " ".join(quarantined.output.split())
    assert "quarantined interactions/quarantined.csv, row 1" in words  # a problem: shown
    assert "Curated tables" not in words and "Snapshot as of" not in words  # the rest: not
    assert "50.00% of the rows read were quarantined" in words
    assert len(_runs(curated)) == 2

    # Nothing pending, the snapshot unchanged: answered without Prefect, nothing written.
    idle = _invoke("run", "--config", str(config), "--json", "--fail-on-rejected", flow=_no_flow)
    assert idle.exit_code == results.OK, idle.output
    doc = _json(idle.stdout)
    assert doc["changed_lake"] is False and doc["files"] == []
    assert doc["snapshot"]["published"] is False and doc["tables"]["interactions"] == 7
    assert "flow" not in doc["timings"] and "before_prefect" in doc["timings"]
    assert len(_runs(curated)) == 2
    shown = _invoke("run", "--config", str(config), flow=_no_flow)
    assert shown.exit_code == 0
    flat = " ".join(shown.output.split())
    assert flat.startswith("servio run: ingest the pending exports, then publish the latest")
    assert "(nothing to do)" in flat and "(unchanged)" in flat and "Report:" in flat
    quiet = _invoke("run", "--config", str(config), "-q", flow=_no_flow)
    assert quiet.exit_code == 0 and quiet.output == ""


# ---------------------------------------------------------------------------------------
# maintain


def test_maintain_writes_its_run_results(tmp_path: Path) -> None:
    config = tmp_path / "servio.toml"
    config.write_text(f'curated_root = "{tmp_path / "curated"}"\n')
    result = _invoke("maintain", "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    doc = _json(result.stdout)
    assert doc["command"] == "maintain" and doc["changed_lake"] is True
    [written] = _runs(tmp_path / "curated")
    assert _valid(json.loads(written.read_text()))["run_id"] == doc["run_id"]
    _hold_lock(tmp_path / "curated")
    busy = _invoke("maintain", "--config", str(config), "--json")
    assert busy.exit_code == results.BUSY
    assert _json(busy.stdout)["status"] == "busy"


def test_a_failure_while_deciding_before_prefect_leaves_the_decision_to_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servio.steps import sequence

    def broken(*_: Any) -> None:
        raise ValueError("a table the check could not read")

    config = land(tmp_path, [], "undecided")
    monkeypatch.setattr(sequence, "idle_run", broken)
    reached = _flow_raising(lambda: RuntimeError("reached the flow"))
    result = _invoke("run", "--config", str(config), flow=reached)
    assert result.exit_code == results.UNEXPECTED and "reached the flow" in result.output


def test_a_run_with_nothing_to_write_is_answered_without_prefect(tmp_path: Path) -> None:
    """Ingested by the run sequence itself (no Prefect); then `servio run` decides, with the
    sequence's functions, that nothing is left — a refused file whose failure the ledger
    holds included — and only a change brings the run (its flow) back."""
    from tests.runs import REQUIRED_ONLY, WITHOUT_DOCS
    from tests.runs import run as sequence_run

    config = land(tmp_path, [], "idle")
    stray = tmp_path / "raw" / "stray.csv"  # at the raw root: refused, tried every run
    stray.write_text("not in a source folder\n")
    sequence_run(config, REQUIRED_ONLY, WITHOUT_DOCS)
    lake = Lake(tmp_path / "curated")
    lake.report_path.write_text("<html></html>")  # the flow draws it; the sequence does not
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "curated").rglob("*"))
    result = _invoke("run", "--config", str(config), "--json", flow=_no_flow)
    assert result.exit_code == results.OK, result.output
    doc = _json(result.stdout)
    assert doc["changed_lake"] is False and doc["snapshot"]["published"] is False
    assert [(f["path"], f["status"]) for f in doc["files"]] == [("stray.csv", "refused")]
    assert doc["totals"]["files_deferred"] == 1 and doc["tables"]["interactions"] == 5
    human = _invoke("run", "--config", str(config), flow=_no_flow)
    flat = " ".join(human.output.split())
    assert human.exit_code == 0 and "(nothing to do)" in flat and "refused stray.csv" in flat
    # A refused file needs a person: --fail-on-rejected alerts on every run while it lies
    # there, an idle one included (which still writes nothing).
    alerted = _invoke("run", "--config", str(config), "--json", "--fail-on-rejected", flow=_no_flow)
    assert alerted.exit_code == results.DATA_ALERT, alerted.output
    assert _json(alerted.stdout)["alerts"] == ["1 file(s) refused: stray.csv (--fail-on-rejected)"]
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "curated").rglob("*"))
    assert after == before  # nothing written, not even a run-results file

    stray.write_text("changed: recorded again\n")
    reached = _flow_raising(lambda: RuntimeError("reached the flow"))
    changed = _invoke("run", "--config", str(config), flow=reached)
    assert changed.exit_code == results.UNEXPECTED and "reached the flow" in changed.output


@pytest.mark.e2e
def test_an_idle_run_imports_neither_prefect_nor_great_expectations(tmp_path: Path) -> None:
    """In a fresh process, as a scheduler starts it: the modules it imported, not its time."""
    import subprocess
    import sys

    from tests.runs import REQUIRED_ONLY, WITHOUT_DOCS
    from tests.runs import run as sequence_run

    config = land(tmp_path, [], "imports")
    sequence_run(config, REQUIRED_ONLY, WITHOUT_DOCS)
    Lake(tmp_path / "curated").report_path.write_text("<html></html>")
    command = [sys.executable, "-X", "importtime", "-c", "from servio.cli import app; app()"]
    done = subprocess.run(
        [*command, "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(nothing to do)" in " ".join(done.stdout.split())
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "polars" in imported  # the check sees what was imported
    assert not {m for m in imported if m.split(".")[0] in ("prefect", "great_expectations")}


# ---------------------------------------------------------------------------------------
# backfill: one document for the whole range (the real backfill: test_backfill.py)


def test_a_backfill_document_names_each_date_and_the_exit_status(tmp_path: Path) -> None:
    from datetime import UTC, date, datetime

    from servio.config import Settings
    from servio.steps.backfill import CANCELLED, DONE, FAILED, DateOutcome

    settings = Settings(raw_root=str(tmp_path / "raw"), curated_root=str(tmp_path / "curated"))
    days = [date(2026, 3, d) for d in (1, 2, 3, 4)]
    outcomes = [
        DateOutcome(days[2], CANCELLED),  # not started: nothing ran
        DateOutcome(days[0], DONE),
        DateOutcome(days[1], FAILED, 0, 1.25, "the disk is full"),
        DateOutcome(days[3], CANCELLED, detail="under way: finishing"),
    ]
    asked = (days[0], days[-1], 2, False, "in_process")
    record = results.backfill_record(settings, "r1", datetime.now(UTC), asked, outcomes, 3.0)
    code = results.backfill_exit_code(outcomes)
    assert code == results.UNEXPECTED
    doc = _valid(results.document(record, code))
    assert doc["command"] == "backfill" and doc["status"] == "error"
    assert doc["error"] == "1 date(s) failed: 2026-03-02"
    dates = doc["backfill"]["dates"]
    assert [(d["as_of_date"], d["status"]) for d in dates] == [
        ("2026-03-01", "already done"),
        ("2026-03-02", "failed"),
        ("2026-03-03", "cancelled"),
        ("2026-03-04", "cancelled"),
    ]
    assert dates[1]["detail"] == "the disk is full" and dates[1]["seconds"] == 1.25
    snapshot_tables = {
        "customer_quality",
        "customer_profitability",
        "customer_segments",
        "customer_value",
        "value_model",
        "quality_drivers",
        "service_levels",
    }
    assert all(d["rows"] == dict.fromkeys(snapshot_tables, 0) for d in dates)  # an empty lake
    assert doc["changed_lake"] is True  # a date ran (failed, or finishing after Ctrl-C)
    assert results.write(record, code) is None
    [path] = _runs(tmp_path / "curated")
    assert path.name == "r1.json" and _valid(json.loads(path.read_text()))["exit_code"] == 1

    stopped = results.backfill_exit_code(outcomes, interrupted=True)
    assert _valid(results.document(record, stopped))["status"] == "interrupted"
    nothing_ran = [DateOutcome(days[0], DONE), DateOutcome(days[1], CANCELLED)]
    idle = results.backfill_record(settings, "r2", datetime.now(UTC), asked, nothing_ran, 0.1)
    assert idle.changed_lake is False and results.backfill_exit_code(nothing_ran) == results.OK
    assert _valid(results.document(idle, results.OK))["changed_lake"] is False
    assert results.write(idle, results.OK) is None
    assert len(_runs(tmp_path / "curated")) == 1  # the lake did not change: no file


def test_fail_on_rejected_counts_rejected_and_refused_files_not_deferred_ones() -> None:
    from servio.raw.landing import LandedFile
    from servio.schemas.tables import DEFERRED, INGESTED, REFUSED, REJECTED
    from servio.steps.publish import IngestSummary
    from servio.steps.stage import StagedFile

    def staged(name: str, status: str) -> StagedFile:
        landed = LandedFile(f"/raw/{name}", name, "interactions", "csv", 1, None)
        return StagedFile(landed, status, None, 0, 0, 0, None, None)

    quiet = IngestSummary(1, 0, 0, 10, 10, 0, {}, files_deferred=1)
    files = [staged("a.csv", INGESTED), staged("b.csv", DEFERRED)]
    on = results.Thresholds(fail_on_rejected=True)
    assert on.alerts(quiet, files) == []  # a deferred file is read again by the next run
    refused = [*files, staged("fifo.csv", REFUSED), staged("link.csv", REFUSED)]
    assert on.alerts(quiet, refused) == [
        "2 file(s) refused: fifo.csv, link.csv (--fail-on-rejected)"
    ]
    rejected = IngestSummary(0, 1, 0, 2, 0, 2, {}, recorded={"c.csv": REJECTED})
    assert on.alerts(rejected, [staged("c.csv", REJECTED)]) == [
        "1 file(s) rejected (--fail-on-rejected)"
    ]
    assert results.Thresholds().alerts(rejected, refused) == []  # opt-in


def test_a_failed_served_flow_run_writes_the_code_servio_run_would_exit_with(
    tmp_path: Path,
) -> None:
    """The served flows answer their failures with the rule `servio run` uses
    (`results.failure`), through `failure_documented` around their `sequence.run`: a run that
    may have written says so in a document and still fails; a busy lake (never locked)
    writes none. (A served run that succeeds: test_events.py.)"""
    from datetime import UTC, datetime

    from servio.config import Settings
    from servio.flows.tasks import failure_documented
    from servio.lake import LakeBusy
    from servio.steps.errors import ReconciliationError
    from servio.steps.sequence import Timed

    settings = Settings(raw_root=str(tmp_path / "raw"), curated_root=str(tmp_path / "curated"))
    cases = [
        ("r4", ReconciliationError("rows_read 10 != valid 9 + quarantined 0"), 4),
        ("r5", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), 5),
        ("r1", KeyError("boom"), 1),
    ]
    for run_id, error, code in cases:
        record = results.RunRecord(results.SERVE_INGEST, run_id, settings, datetime.now(UTC))
        with pytest.raises(type(error)), failure_documented(record, Timed()):
            raise error
        doc = _valid(
            json.loads((tmp_path / "curated" / "_servio" / "runs" / f"{run_id}.json").read_text())
        )
        assert doc["command"] == "serve-ingest" and doc["exit_code"] == code
        assert doc["changed_lake"] is True and doc["error"]
    assert (
        _valid(json.loads((tmp_path / "curated/_servio/runs/r1.json").read_text()))["error"]
        == "KeyError: 'boom'"
    )
    busy = results.RunRecord(results.SERVE_SNAPSHOT, "r3", settings, datetime.now(UTC))
    assert results.flow_run_failed(busy, LakeBusy("held by another run")) is None
    assert [p.stem for p in _runs(tmp_path / "curated")] == ["r1", "r4", "r5"]


def test_run_results_that_cannot_be_written_are_a_problem_said_not_raised(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from servio.config import Settings

    blocked = tmp_path / "curated"
    blocked.write_text("a file where the lake's folder would be")
    settings = Settings(raw_root=str(tmp_path / "raw"), curated_root=str(blocked))
    record = results.RunRecord(results.SERVE_SNAPSHOT, "r", settings, datetime.now(UTC))
    record.changed_lake = True
    problem = results.write(record, results.OK)
    assert problem is not None and problem.startswith("the run results could not be written")
