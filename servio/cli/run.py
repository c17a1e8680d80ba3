"""`servio generate` and `servio run`: sample exports into the landing zone, and the main job
with its summary (files, rows, what was quarantined and why, the snapshot, the report)."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import (
    TaskID,
)
from rich.table import Table

from servio.config import ConfigError, Settings, check_raw_root
from servio.objectstore import is_object_url

if TYPE_CHECKING:
    from servio.flows.run import RunSummary
    from servio.lake import Lake

from servio.cli.app import (
    ConfigOption,
    _as_of,
    _progress_bar,
    _quiet_defaults,
    _settings,
    app,
    console,
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
    # Command-line choices win over the file and the environment; they travel to the flow
    # as its parameters (the flow reads its settings again, with the same overrides).
    options = {"dask_address": dask_address, "snapshot_buckets": buckets}
    settings = _settings(config, {k: v for k, v in options.items() if v is not None})
    try:
        check_raw_root(settings)
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]\n{escape(str(exc))}")
        raise typer.Exit(2) from None
    from servio import progress
    from servio.flows.run import run_pipeline
    from servio.flows.runners import with_runner
    from servio.lake import LakeBusy
    from servio.steps.errors import ReconciliationError

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
            summary = flow(
                config_path=str(config) if config else None,
                as_of=snapshot_date,
                wait_seconds=wait,
                dask_address=dask_address,
                snapshot_buckets=buckets,
            )
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
    from servio.steps.summary import quarantined_in_run, top_reasons

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
    from servio.schemas.tables import DEFERRED, REFUSED

    left = [s for s in summary.staged if s.status in (REFUSED, DEFERRED)]
    for item in left[:shown]:
        console.print(
            f"  [yellow]{item.status}[/yellow] {escape(item.landed.relative_path)}: "
            f"{escape(item.reason or '')}"
        )
    if len(left) > shown:
        console.print(f"  … and {len(left) - shown:,} more (table ingest_ledger)")


def _print_summary(summary: RunSummary, settings: Settings) -> None:
    from servio.lake import Lake
    from servio.steps.summary import table_row_counts

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
    for warning in snap.warnings:  # a value model that did not converge: not used, said here
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    if summary.report_path:
        console.print(f"Report: [bold]{escape(summary.report_path)}[/bold]")
    if summary.data_docs_path:
        console.print(
            "Validation (Great Expectations Data Docs): "
            f"[bold]{escape(summary.data_docs_path)}[/bold]"
        )
