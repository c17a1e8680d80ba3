"""The `servio` command: generate sample exports, run the pipeline, and friends."""

from __future__ import annotations

import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from servio.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from flows.run import RunSummary

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
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The embedded server needs 7–15 s on an idle 2-core machine; leave room under load.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]\n{exc}")
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

    target = out or Path(_settings(config).raw_root)
    options = GenerateOptions(
        customers=customers,
        days=days,
        seed=seed,
        messiness=messiness,
        end_date=date.fromisoformat(end_date),
        interactions_per_customer=interactions_per_customer,
    )
    with console.status(f"Generating {customers:,} customers over {days} days…"):
        report = write_exports(target, options)
    console.print(
        f"Wrote {len(report.files)} files to [bold]{target}[/bold] in {report.seconds:.1f}s: "
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
    config: ConfigOption = None,
) -> None:
    """Ingest every pending export and publish the curated tables and the latest snapshot."""
    _quiet_defaults()
    settings = _settings(config)
    from flows.run import run_pipeline
    from servio import progress
    from servio.storage import LakeBusy, ReconciliationError

    snapshot_date = date.fromisoformat(as_of) if as_of else None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def on_step(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        progress.plug(on_step)
        try:
            summary = run_pipeline(str(config) if config else None, snapshot_date, wait)
        except LakeBusy as exc:
            console.print(f"[yellow]{exc}[/yellow]")
            raise typer.Exit(3) from None
        except ReconciliationError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(4) from None
        finally:
            progress.plug(None)
    _print_summary(summary, settings)


def _print_summary(summary: RunSummary, settings: Settings) -> None:
    from servio.pipeline import table_row_counts
    from servio.storage import Lake

    ingest, snap = summary.ingest, summary.snapshot
    console.print(
        f"[bold]servio run {summary.run_id}[/bold]: {ingest.files_ingested} file(s) ingested, "
        f"{ingest.files_rejected} rejected, {ingest.files_duplicate} duplicate(s) skipped; "
        f"{ingest.rows_read:,} rows read, {ingest.rows_valid:,} valid, {ingest.rows_quarantined:,} quarantined."
    )
    rejected = [s for s in summary.staged if s.status == "rejected"]
    for item in rejected:
        console.print(f"  [yellow]rejected[/yellow] {item.landed.relative_path}: {item.reason}")
    table = Table(title=f"Curated tables in {summary.curated_root}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in table_row_counts(Lake(settings.curated_root), settings).items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    if snap.as_of_date:
        actions = ", ".join(f"{k} {v:,}" for k, v in snap.actions.items())
        console.print(f"Snapshot as of {snap.as_of_date}: {snap.customers:,} customers — {actions}")
    if summary.report_path:
        console.print(f"Report: [bold]{summary.report_path}[/bold]")


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

    settings = _settings(config)
    lake = Lake(settings.curated_root)
    snapshot_date = date.fromisoformat(as_of) if as_of else None
    try:
        with console.status("Drawing the report…"):
            path = write_report(lake, settings, out or default_report_path(lake), snapshot_date)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"Report: [bold]{path}[/bold]")


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
        console.print(f"wrote {path}")
