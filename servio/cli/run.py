"""`servio generate` and `servio run`: sample exports into the landing zone, and the main job
with its summary (files, rows, what was quarantined and why, the snapshot, the report)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.markup import escape
from rich.progress import (
    TaskID,
)
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import Callable

    from servio.config import Settings
    from servio.flows.run import RunSummary
    from servio.lake import Lake
    from servio.steps.results import RunRecord, Thresholds

from servio.cli.app import (
    ConfigOption,
    JsonOption,
    Output,
    QuietOption,
    _as_of,
    _progress_bar,
    _quiet_defaults,
    _settings,
    app,
    console,
    seams,
)


@app.command()
def generate(
    customers: Annotated[int, typer.Option(help="Number of customers.")] = 2_000,
    days: Annotated[int, typer.Option(help="Days of activity, ending at --end-date.")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 42,
    messiness: Annotated[
        float, typer.Option(help="Share of deliberately bad rows (0 = clean).")
    ] = 0.03,
    end_date: Annotated[str, typer.Option(help="Last day of activity, YYYY-MM-DD.")] = "2026-11-26",
    interactions_per_customer: Annotated[
        float, typer.Option(help="Mean contacts per customer.")
    ] = 6.0,
    out: Annotated[
        Path | None, typer.Option(help="Landing zone to write (default: raw_root).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write realistic, seeded sample exports (every format) into the landing zone."""
    from servio.objectstore import is_object_url
    from servio.tools.generate import GenerateOptions
    from servio.tools.generate import generate as write_exports

    raw_root = _settings(config).raw_root
    if out is None and is_object_url(raw_root):
        # The generator writes local files; upload them with your usual S3 tooling.
        console.print(f"[red]raw_root is {escape(raw_root)}: give a local folder with --out[/red]")
        raise typer.Exit(2)
    target = out or Path(raw_root)
    options = GenerateOptions(
        customers=customers,
        days=days,
        seed=seed,
        messiness=messiness,
        end_date=date.fromisoformat(end_date),
        interactions_per_customer=interactions_per_customer,
    )
    with console.status(f"Generating {customers:,} customers over {days} days…"):
        try:
            report = write_exports(target, options)
        except (FileExistsError, ValueError) as exc:
            console.print(f"[red]{escape(str(exc))}[/red]")
            raise typer.Exit(2) from None
    console.print(
        f"Wrote {len(report.files)} files to [bold]{escape(str(target))}[/bold] in {report.seconds:.1f}s: "
        f"{report.interaction_rows:,} interaction rows ({report.bad_interaction_rows:,} deliberately bad), "
        f"{report.survey_rows:,} survey rows ({report.bad_survey_rows:,} bad); "
        f"{report.valid_interaction_ids:,} distinct valid interaction ids."
    )


@app.command()
def run(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Snapshot date (default: latest date in the data)."),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait if another run holds the lake.")
    ] = 0.0,
    dask_address: Annotated[
        str | None,
        typer.Option(
            help="Run the tasks on this Dask scheduler (tcp://host:8786), or 'local' for a "
            "temporary local cluster. Default: setting dask_address, else threads here."
        ),
    ] = None,
    buckets: Annotated[
        int | None,
        typer.Option(help="Customer-hash buckets for the snapshot (setting snapshot_buckets)."),
    ] = None,
    fail_on_rejected: Annotated[
        bool,
        typer.Option(
            help="Exit 7 when a file was rejected, or a file is refused for where it is (a "
            "FIFO, a link out of the raw root); the run is published anyway."
        ),
    ] = False,
    max_quarantined_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Exit 7 when more than this share of the rows read (0–1) was quarantined.",
        ),
    ] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """Ingest every pending export and publish the curated tables and the latest snapshot."""
    out = Output(as_json, quiet)
    started = datetime.now(UTC)
    snapshot_date = _as_of(as_of)
    # The first line, before anything slow: what this run is about to do.
    out.say(
        "servio run: ingest the pending exports, then publish the "
        + (f"snapshot as of {snapshot_date}" if snapshot_date else "latest snapshot")
        + f" (configuration: {escape(str(config or 'servio.toml'))})"
    )
    from servio.config import ConfigError, check_raw_root, load_settings
    from servio.steps import results

    _quiet_defaults()
    # Command-line choices win over the file and the environment; they travel to the flow
    # as its parameters (the flow reads its settings again, with the same overrides).
    options = {"dask_address": dask_address, "snapshot_buckets": buckets}
    try:
        overrides = {k: v for k, v in options.items() if v is not None}
        settings = load_settings(config, overrides=overrides)
        check_raw_root(settings)
    except ConfigError as exc:
        record = results.RunRecord(results.RUN, "", None, started, error=str(exc))
        _finish(out, record, results.USAGE, f"[red]configuration error[/red]\n{escape(str(exc))}")
    out.say(f"  {escape(settings.raw_root)} → {escape(settings.curated_root)}")
    from servio.steps.context import new_run_id

    run_id = new_run_id("run", started)
    record = results.RunRecord(results.RUN, run_id, settings, started)
    thresholds = results.Thresholds(fail_on_rejected, max_quarantined_rate)
    summary = _without_prefect(out, record, snapshot_date, wait)
    if summary is None:
        flow_options = (config, snapshot_date, wait, dask_address, buckets)
        summary = _with_prefect(out, record, flow_options, seams(ctx).run_flow)
    code = _exit_code(record, thresholds)
    from servio.lake import Lake
    from servio.steps.summary import table_row_counts

    record.tables = table_row_counts(Lake(settings.curated_root), settings)
    if record.changed_lake:
        _write_results(out, record, code)
    _print_summary(out, record, settings, summary)
    _finish(out, record, code)


def _without_prefect(
    out: Output, record: RunRecord, snapshot_date: date | None, wait: float
) -> str | None:
    """Before Prefect starts: a lake another run holds is answered at once (exit 3), and a
    run with nothing to write (`sequence.idle`) is done here, in about a second. Returns
    "idle" when done, None when the flow must run."""
    import time

    from servio.lake import Lake
    from servio.steps import results, sequence

    assert record.settings is not None
    started = time.perf_counter()
    lake = Lake(record.settings.curated_root)
    try:
        lake.check_reachable()
        holder = lake.lock_holder()
    except OSError as exc:
        record.error = str(exc)
        _finish(out, record, results.IO_ERROR, f"[red]servio run failed: {escape(str(exc))}[/red]")
    if holder is not None and wait <= 0:
        record.error = (
            f"{lake.root} is busy: run {holder.get('run_id')} (pid {holder.get('pid')} on "
            f"{holder.get('host')}) is writing; try again when it ends, or wait with --wait S"
        )
        _finish(out, record, results.BUSY, f"[yellow]{escape(record.error)}[/yellow]")
    if snapshot_date is not None:
        return None  # the report of another date is drawn again: the flow does it
    try:
        outcome = sequence.idle_run(
            record.settings, record.run_id, sequence.Plan(snapshot=sequence.LATEST)
        )
    except Exception:  # whatever it is, the run itself meets it and answers it
        logging.getLogger("servio.cli").debug("deciding before Prefect failed", exc_info=True)
        return None
    if outcome is None:
        return None
    snap = outcome.snapshot
    report = lake.report_path  # = servio.report.default_report_path, without its imports
    if snap is not None and snap.customers and not report.exists():
        return None  # the flow draws the missing report
    record.ingest, record.snapshot, record.staged = outcome.ingest, snap, outcome.staged
    record.report_path = str(report) if snap is not None and snap.customers else None
    record.seconds["before_prefect"] = time.perf_counter() - started
    return "idle"


def _with_prefect(
    out: Output,
    record: RunRecord,
    options: tuple[Path | None, date | None, float, str | None, int | None],
    run_flow: Callable[..., RunSummary] | None = None,
) -> str:
    """The `servio-run` flow (`run_flow` in its place when given: `Seams`), its outcome
    or its failure answered with the exit code of `results.failure`."""
    import time

    from servio import progress
    from servio.steps import results

    assert record.settings is not None
    out.say("Starting Prefect (the embedded server takes a few seconds)…")
    started = time.perf_counter()
    failure: tuple[int, str] | None = None
    with _progress_bar(enabled=out.chatty) as bar:
        tasks: dict[str, TaskID] = {}

        def on_step(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        progress.plug(on_step)
        config, snapshot_date, wait, dask_address, buckets = options
        try:
            if run_flow is None:  # Prefect is imported here, not before: the first line is out
                from servio.flows.run import run_pipeline
                from servio.flows.runners import with_runner

                run_flow = with_runner(run_pipeline, record.settings)
            summary = run_flow(
                config_path=str(config) if config else None,
                as_of=snapshot_date,
                wait_seconds=wait,
                dask_address=dask_address,
                snapshot_buckets=buckets,
                run_id=record.run_id,
            )
        except Exception as exc:  # answered in one line, never a traceback
            code, record.changed_lake = results.failure(exc)
            record.error = str(exc)
            if code == results.BUSY:
                message = f"[yellow]{escape(str(exc))}[/yellow]"
            elif code == results.USAGE:  # the raw folder vanished since the check above
                message = f"[red]configuration error[/red]\n{escape(str(exc))}"
            elif code == results.RECONCILIATION:
                message = f"[red]{escape(str(exc))}[/red]"
            elif code == results.IO_ERROR:  # disk full, permissions: the lake is unchanged
                message = f"[red]servio run failed: {escape(str(exc))}[/red]"
            else:  # a servio bug: a message, not a traceback (logged at DEBUG)
                logging.getLogger("servio.cli").debug("servio run failed", exc_info=True)
                record.error = results.first_line(exc)
                first = str(exc).splitlines()[0] if str(exc) else ""
                message = (
                    f"[red]servio run failed unexpectedly ({type(exc).__name__}): "
                    f"{escape(first)}[/red]\n"
                    "A crash never leaves a partial publication: the next run finishes or "
                    "discards it."
                )
            failure = (code, message)
        finally:
            progress.plug(None)
    record.seconds["flow"] = time.perf_counter() - started
    if failure is not None:
        code, message = failure
        if record.changed_lake:
            _write_results(out, record, code)
        _finish(out, record, code, message)
    record.staged, record.duplicates = summary.staged, summary.duplicates
    record.ingest, record.snapshot = summary.ingest, summary.snapshot
    record.seconds.update(summary.seconds)
    record.report_path, record.data_docs_path = summary.report_path, summary.data_docs_path
    record.warnings = list(summary.warnings)
    record.changed_lake = summary.locked
    return "flow"


def _exit_code(record: RunRecord, thresholds: Thresholds) -> int:
    """6 when something after the publish failed; else 7 when an opt-in threshold was
    crossed; else 0 (README "Exit codes")."""
    from servio.steps import results

    record.alerts = thresholds.alerts(record.ingest, record.staged)
    if record.warnings:
        return results.AFTER_PUBLISH
    return results.DATA_ALERT if record.alerts else results.OK


def _write_results(out: Output, record: RunRecord, code: int) -> None:
    """`_servio/runs/<run_id>.json`; failing to write it (the disk that failed the run) is
    said, and changes nothing else."""
    from servio.steps import results

    problem = results.write(record, code)
    if problem:
        out.problem(f"[yellow]{escape(problem)}[/yellow]")


def _finish(out: Output, record: RunRecord, code: int, message: str | None = None) -> NoReturn:
    """Print the problem (if any) and the JSON document (`--json`), then exit with `code`."""
    from servio.steps import results

    if message:
        out.problem(message)
    for warning in record.warnings:
        out.problem(f"[yellow]warning: {escape(warning)}[/yellow]")
    for alert in record.alerts:
        out.problem(f"[yellow]alert: {escape(alert)}[/yellow]")
    out.document(results.document(record, code))
    raise typer.Exit(code)


def _print_quarantine(out: Output, run_id: str, lake: Lake, shown: int = 10) -> None:
    """Name the file, the row, the column and the rule of what this run quarantined."""
    from servio.steps.summary import quarantined_in_run, top_reasons

    quarantined = quarantined_in_run(lake, run_id)
    if quarantined.is_empty():
        return
    for file, row, _, detail in quarantined.head(shown).iter_rows():
        where = f"{file}, row {row}" if row is not None else f"{file} (whole file)"
        out.problem(f"  [yellow]quarantined[/yellow] {escape(where)}: {escape(detail or '')}")
    if quarantined.height > shown:
        out.problem(f"  … and {quarantined.height - shown:,} more (table quarantine)")
    reasons = ", ".join(f"{code} {n:,}" for code, n in top_reasons(quarantined, 5))
    out.problem(f"  top reasons: {escape(reasons)}")


def _print_left_for_later(out: Output, record: RunRecord, shown: int = 10) -> None:
    """Files this run did not read (a location or an I/O failure): they are tried again."""
    from servio.schemas.tables import DEFERRED, REFUSED

    left = [s for s in record.staged if s.status in (REFUSED, DEFERRED)]
    for item in left[:shown]:
        out.problem(
            f"  [yellow]{item.status}[/yellow] {escape(item.landed.relative_path)}: "
            f"{escape(item.reason or '')}"
        )
    if len(left) > shown:
        out.problem(f"  … and {len(left) - shown:,} more (table ingest_ledger)")


def _print_summary(out: Output, record: RunRecord, settings: Settings, how: str) -> None:
    from servio.lake import Lake
    from servio.steps.publish import IngestSummary

    lake = Lake(settings.curated_root)
    ingest = record.ingest or IngestSummary(0, 0, 0, 0, 0, 0, {})
    snap = record.snapshot
    nothing = " (nothing to do)" if how == "idle" else ""
    out.say(
        f"[bold]servio run {record.run_id}[/bold]{nothing}: {ingest.files_ingested} file(s) "
        f"ingested, {ingest.files_rejected} rejected, {ingest.files_duplicate} duplicate(s) "
        f"skipped, {ingest.files_deferred} left for the next run; "
        f"{ingest.rows_read:,} rows read, {ingest.rows_valid:,} valid, {ingest.rows_quarantined:,} quarantined."
    )
    if ingest.rows_quarantined or ingest.files_rejected:
        _print_quarantine(out, record.run_id, lake)
    _print_left_for_later(out, record)
    if out.chatty:
        table = Table(title=escape(f"Curated tables in {lake.root}"))
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, rows in (record.tables or {}).items():
            table.add_row(name, f"{rows:,}")
        console.print(table)
    if snap is not None and snap.as_of_date and not snap.customers:
        start = snap.as_of_date - timedelta(days=settings.window_days)
        out.say(
            f"Snapshot as of {snap.as_of_date}: no interaction or survey response in its window "
            f"({start}, {snap.as_of_date}], so no customer rows and no report."
        )
    elif snap is not None and snap.as_of_date:
        actions = ", ".join(f"{k} {v:,}" for k, v in snap.actions.items())
        unchanged = "" if snap.published else " (unchanged)"
        out.say(
            f"Snapshot as of {snap.as_of_date}{unchanged}: {snap.customers:,} customers — "
            f"{escape(actions)}"
        )
    if snap is not None:
        # A value model of the snapshot that did not converge (its columns are null): part of
        # the summary, and of the JSON document's snapshot; not a problem of this run, so
        # --quiet does not repeat it on every run that leaves the snapshot as it is.
        for warning in snap.warnings:
            out.say(f"[yellow]warning: {escape(warning)}[/yellow]")
    if record.report_path:
        out.say(f"Report: [bold]{escape(record.report_path)}[/bold]")
    if record.data_docs_path:
        out.say(
            "Validation (Great Expectations Data Docs): "
            f"[bold]{escape(record.data_docs_path)}[/bold]"
        )
