"""The `servio` command: generate sample exports, run the pipeline, and friends."""

from __future__ import annotations

import logging
import os
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from servio.config import ENV_PREFIX, ConfigError, Settings, check_raw_root, load_settings
from servio.objectstore import is_object_url

if TYPE_CHECKING:
    from flows.run import RunSummary
    from servio.storage import Lake

app = typer.Typer(
    help="servio: customer-service exports in, curated quality and profitability tables out.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML configuration (default: ./servio.toml).")
]


def _quiet_defaults() -> None:
    """No telemetry (the machine may be offline) and terse Prefect logs for a CLI user."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The embedded (ephemeral) Prefect server listens on loopback unless told otherwise.
    os.environ.setdefault("PREFECT_SERVER_API_HOST", "127.0.0.1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The embedded server needs 7–15 s on an idle 2-core machine; leave room under load.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def _progress_bar() -> Progress:
    """The bar `run` and `backfill` show while they work; gone when they print results."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _as_of(value: str | None) -> date | None:
    """`--as-of` as a date, or a usage error (exit 2) naming the option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date; expected YYYY-MM-DD", param_hint="'--as-of'"
        ) from None


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]\n{escape(str(exc))}")
        raise typer.Exit(2) from None


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
    from servio.generate import GenerateOptions
    from servio.generate import generate as write_exports

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
    config: ConfigOption = None,
) -> None:
    """Ingest every pending export and publish the curated tables and the latest snapshot."""
    _quiet_defaults()
    # Command-line choices win over the file; the flow reads its settings again from both.
    if dask_address is not None:
        os.environ[ENV_PREFIX + "DASK_ADDRESS"] = dask_address
    if buckets is not None:
        os.environ[ENV_PREFIX + "SNAPSHOT_BUCKETS"] = str(buckets)
    settings = _settings(config)
    try:
        check_raw_root(settings)
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]\n{escape(str(exc))}")
        raise typer.Exit(2) from None
    from flows.run import run_pipeline
    from flows.runners import with_runner
    from servio import progress
    from servio.storage import LakeBusy, ReconciliationError

    snapshot_date = _as_of(as_of)
    with _progress_bar() as bar:
        tasks: dict[str, TaskID] = {}

        def on_step(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        progress.plug(on_step)
        try:
            flow = with_runner(run_pipeline, settings)
            summary = flow(str(config) if config else None, snapshot_date, wait)
        except LakeBusy as exc:
            console.print(f"[yellow]{escape(str(exc))}[/yellow]")
            raise typer.Exit(3) from None
        except ReconciliationError as exc:
            console.print(f"[red]{escape(str(exc))}[/red]")
            raise typer.Exit(4) from None
        except OSError as exc:  # disk full, permissions: the lake is unchanged (RELIABILITY.md)
            console.print(f"[red]servio run failed: {escape(str(exc))}[/red]")
            raise typer.Exit(5) from None
        except ConfigError as exc:  # the raw folder vanished since the check above
            console.print(f"[red]configuration error[/red]\n{escape(str(exc))}")
            raise typer.Exit(2) from None
        except Exception as exc:  # a servio bug: a message, not a traceback (logged at DEBUG)
            logging.getLogger("servio.cli").debug("servio run failed", exc_info=True)
            console.print(
                f"[red]servio run failed unexpectedly ({type(exc).__name__}): "
                f"{escape(str(exc).splitlines()[0] if str(exc) else '')}[/red]\n"
                "A crash never leaves a partial publication: the next run finishes or discards it."
            )
            raise typer.Exit(1) from None
        finally:
            progress.plug(None)
    _print_summary(summary, settings)
    for warning in summary.warnings:
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    if summary.warnings:
        raise typer.Exit(6)


def _print_quarantine(run_id: str, lake: Lake, shown: int = 10) -> None:
    """Name the file, the row, the column and the rule of what this run quarantined."""
    from servio.pipeline import quarantined_in_run, top_reasons

    quarantined = quarantined_in_run(lake, run_id)
    if quarantined.is_empty():
        return
    for file, row, _, detail in quarantined.head(shown).iter_rows():
        where = f"{file}, row {row}" if row is not None else f"{file} (whole file)"
        console.print(f"  [yellow]quarantined[/yellow] {escape(where)}: {escape(detail or '')}")
    if quarantined.height > shown:
        console.print(f"  … and {quarantined.height - shown:,} more (table quarantine)")
    reasons = ", ".join(f"{code} {n:,}" for code, n in top_reasons(quarantined, 5))
    console.print(f"  top reasons: {escape(reasons)}")


def _print_left_for_later(summary: RunSummary, shown: int = 10) -> None:
    """Files this run did not read (a location or an I/O failure): they are tried again."""
    from servio.pipeline import DEFERRED, REFUSED

    left = [s for s in summary.staged if s.status in (REFUSED, DEFERRED)]
    for item in left[:shown]:
        console.print(
            f"  [yellow]{item.status}[/yellow] {escape(item.landed.relative_path)}: "
            f"{escape(item.reason or '')}"
        )
    if len(left) > shown:
        console.print(f"  … and {len(left) - shown:,} more (table ingest_ledger)")


def _print_summary(summary: RunSummary, settings: Settings) -> None:
    from servio.pipeline import table_row_counts
    from servio.storage import Lake

    ingest, snap = summary.ingest, summary.snapshot
    console.print(
        f"[bold]servio run {summary.run_id}[/bold]: {ingest.files_ingested} file(s) ingested, "
        f"{ingest.files_rejected} rejected, {ingest.files_duplicate} duplicate(s) skipped, "
        f"{ingest.files_deferred} left for the next run; "
        f"{ingest.rows_read:,} rows read, {ingest.rows_valid:,} valid, {ingest.rows_quarantined:,} quarantined."
    )
    _print_quarantine(summary.run_id, Lake(settings.curated_root))
    _print_left_for_later(summary)
    table = Table(title=escape(f"Curated tables in {summary.curated_root}"))
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in table_row_counts(Lake(settings.curated_root), settings).items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    if snap.as_of_date and not snap.customers:
        start = snap.as_of_date - timedelta(days=settings.window_days)
        console.print(
            f"Snapshot as of {snap.as_of_date}: no interaction or survey response in its window "
            f"({start}, {snap.as_of_date}], so no customer rows and no report."
        )
    elif snap.as_of_date:
        actions = ", ".join(f"{k} {v:,}" for k, v in snap.actions.items())
        console.print(
            f"Snapshot as of {snap.as_of_date}: {snap.customers:,} customers — {escape(actions)}"
        )
    if summary.report_path:
        console.print(f"Report: [bold]{escape(summary.report_path)}[/bold]")
    if summary.data_docs_path:
        console.print(
            "Validation (Great Expectations Data Docs): "
            f"[bold]{escape(summary.data_docs_path)}[/bold]"
        )


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


@app.command()
def report(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Snapshot date (default: the latest snapshot).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="HTML file to write.")] = None,
    config: ConfigOption = None,
) -> None:
    """Write a self-contained HTML report of a snapshot: whale curve, gaps, actions, data quality."""
    from servio.report import default_report_path, write_report
    from servio.storage import Lake

    snapshot_date = _as_of(as_of)
    settings = _settings(config)
    lake = Lake(settings.curated_root)
    try:
        with console.status("Drawing the report…"):
            path = write_report(lake, settings, out or default_report_path(lake), snapshot_date)
    except (ValueError, OSError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    console.print(f"Report: [bold]{escape(str(path))}[/bold]")


@app.command()
def docs(
    out: Annotated[
        Path, typer.Option(help="Folder for DATA_DICTIONARY.md and data_dictionary.html.")
    ] = Path("docs"),
    config: ConfigOption = None,
) -> None:
    """Write the data dictionary of every curated table and raw contract, from schemas/."""
    from servio.docs import write_docs

    for path in write_docs(_settings(config).catalog, out):
        console.print(f"wrote {escape(str(path))}")


# ---------------------------------------------------------------------------------------
# operating on a Prefect server (SPEC §5): serve, watch, scan, backfill


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


@app.command()
def serve(
    watch: Annotated[
        bool, typer.Option("--watch/--no-watch", help="Also watch the raw zone and emit events.")
    ] = True,
    poll: Annotated[float, typer.Option(help="Seconds between two looks at the raw zone.")] = 1.0,
    cron: Annotated[
        str, typer.Option(help="Daily snapshot schedule, in the configured source_timezone.")
    ] = "0 2 * * *",
    config: ConfigOption = None,
) -> None:
    """Register and serve the ingest-file, build-snapshot and backfill deployments on the
    Prefect server at PREFECT_API_URL (and watch the raw zone unless --no-watch)."""
    _quiet_defaults()
    settings = _settings(config)
    if not _api_url():
        console.print(
            "[red]PREFECT_API_URL is not set[/red]: start a server (`prefect server start`) and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api`"
        )
        raise typer.Exit(2)
    import threading

    from prefect import serve as prefect_serve

    from flows.deployments import INGEST_DEPLOYMENT, build_deployments
    from servio.watch import Watcher, catch_up

    deployments = build_deployments(settings, str(config) if config else None, cron)
    watcher = Watcher(settings, poll)

    def start() -> None:
        # Files that landed while nothing was serving (or whose run died with a killed
        # serve) get a run now; the watcher then only emits what lands from here on.
        try:
            watcher.seed(catch_up(settings, f"ingest-file/{INGEST_DEPLOYMENT}"))
        except Exception as exc:  # the watcher (and the served deployments) must still run
            console.print(f"[yellow]catch-up of pending files failed: {escape(str(exc))}[/yellow]")
        if watch:
            watcher.run()

    threading.Thread(target=start, name="servio-start", daemon=True).start()
    if watch:
        console.print(f"watching [bold]{escape(settings.raw_root)}[/bold] every {poll:g}s")
    # Poll the server every second for triggered runs (default 10 s): landing → rows fast.
    prefect_serve(*deployments, query_seconds=1)


@app.command("watch")
def watch_raw_zone(
    poll: Annotated[float, typer.Option(help="Seconds between two looks at the raw zone.")] = 1.0,
    config: ConfigOption = None,
) -> None:
    """Watch the raw zone; emit one `servio.raw.file.landed` event per complete file."""
    _quiet_defaults()
    settings = _settings(config)
    if not _api_url():
        console.print("[red]PREFECT_API_URL is not set[/red]: events need a Prefect server")
        raise typer.Exit(2)
    from servio.watch import Watcher

    console.print(
        f"watching [bold]{escape(settings.raw_root)}[/bold] every {poll:g}s (Ctrl-C stops)"
    )
    watcher = Watcher(settings, poll)
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop()


@app.command()
def scan(config: ConfigOption = None) -> None:
    """Emit one `servio.raw.file.landed` event for every pending file, once."""
    _quiet_defaults()
    settings = _settings(config)
    if not _api_url():
        console.print("[red]PREFECT_API_URL is not set[/red]: events need a Prefect server")
        raise typer.Exit(2)
    from servio.watch import scan as emit_pending

    files = emit_pending(settings)
    for landed in files:
        console.print(f"event for {escape(landed.relative_path)} ({(landed.sha256 or '')[:12]}…)")
    console.print(f"{len(files)} event(s) emitted")


@app.command()
def backfill(
    start: Annotated[str, typer.Option("--from", help="First as-of date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last as-of date, YYYY-MM-DD (inclusive).")],
    parallel: Annotated[int, typer.Option(help="Snapshots at most in flight at once.")] = 2,
    force: Annotated[bool, typer.Option(help="Recompute dates already done.")] = False,
    wait: Annotated[
        float, typer.Option(help="Seconds each snapshot may wait for the lake lock.")
    ] = 600.0,
    config: ConfigOption = None,
) -> None:
    """Recompute the snapshots from --from to --to; dates already done are skipped. Runs the
    build-snapshot deployment per date when PREFECT_API_URL is set, else in this process."""
    _quiet_defaults()
    settings = _settings(config)
    from flows.backfill import FAILED, DateOutcome, dates_between, run_backfill

    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        total = len(dates_between(first, last))
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    on_server = _api_url() is not None
    where = "on the Prefect server" if on_server else "in this process"
    with _progress_bar() as bar:
        task = bar.add_task(f"backfill {where}", total=total)

        def on_done(outcome: DateOutcome) -> None:
            bar.advance(task)

        outcomes = run_backfill(
            settings, first, last, parallel, force, on_server, wait, on_done=on_done
        )
    table = Table(title=f"backfill {first} → {last} ({where}, parallel {parallel})")
    for column in ("as_of", "outcome", "customers", "seconds", "detail"):
        table.add_column(column, justify="right" if column in ("customers", "seconds") else "left")
    for o in outcomes:
        colour = "red" if o.outcome == FAILED else "green"
        table.add_row(
            o.as_of.isoformat(),
            f"[{colour}]{o.outcome}[/{colour}]",
            f"{o.customers:,}" if o.customers else "",
            f"{o.seconds:.1f}" if o.seconds else "",
            escape(o.detail),
        )
    console.print(table)
    if any(o.outcome == FAILED for o in outcomes):
        raise typer.Exit(1)


@app.command()
def maintain(
    retention_hours: Annotated[
        int | None,
        typer.Option(help="Keep superseded files this long (default: vacuum_retention_hours)."),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait if another run holds the lake.")
    ] = 0.0,
    config: ConfigOption = None,
) -> None:
    """Compact small files, checkpoint the Delta logs and vacuum superseded files older than
    the retention (servio also does this by itself once enough publications piled up)."""
    environ = dict(os.environ)
    if retention_hours is not None:  # validated like the setting it overrides, once
        environ[ENV_PREFIX + "VACUUM_RETENTION_HOURS"] = str(retention_hours)
    try:
        settings = load_settings(config, environ)
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]\n{exc}")
        raise typer.Exit(2) from None
    from servio.pipeline import new_run_id
    from servio.storage import Lake, LakeBusy

    lake = Lake(settings.curated_root)
    try:
        with lake.lock(new_run_id(), wait), console.status("Maintaining the lake…"):
            lake.recover()
            done = lake.maintain(settings.vacuum_retention_hours)
    except LakeBusy as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(3) from None
    table = Table(
        title=f"servio maintain {lake.root} (retention {settings.vacuum_retention_hours} h)"
    )
    for column in ("table", "files compacted", "files deleted"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, counts in done.items():
        table.add_row(name, f"{counts['files_compacted']:,}", f"{counts['files_deleted']:,}")
    console.print(table)


@app.command()
def export(
    action: Annotated[
        str,
        typer.Option(
            help="retain_now, grow, ask_feedback, reduce_cost_to_serve, review_terms, or all."
        ),
    ],
    file_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Snapshot date (default: the latest snapshot).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="File to write (default: ./servio-<action>-<as_of>.<format>)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write the customers of an action, one row each, for a CRM import (columns:
    docs/EXPORT.md): the full lists behind the report's "Which customers"."""
    from servio.report.export import EXPORT_ACTIONS, FORMATS, export_customers
    from servio.storage import Lake

    if action not in EXPORT_ACTIONS:
        raise typer.BadParameter(
            f"{action!r} is not an action; expected one of {', '.join(EXPORT_ACTIONS)}",
            param_hint="'--action'",
        )
    if file_format not in FORMATS:
        raise typer.BadParameter(
            f"{file_format!r} is not a format; expected csv or parquet", param_hint="'--format'"
        )
    snapshot_date = _as_of(as_of)
    settings = _settings(config)
    try:
        done = export_customers(
            Lake(settings.curated_root), settings, action, file_format, snapshot_date, out
        )
    except (ValueError, OSError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"Exported {done.rows:,} customers ({escape(done.action)}, as of {done.as_of}) to "
        f"[bold]{escape(str(done.path))}[/bold]"
    )
