"""`servio report`, `servio export`, `servio docs` and `servio maintain`: reading and keeping
the lake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from servio.cli.app import (
    ConfigOption,
    JsonOption,
    Output,
    QuietOption,
    _as_of,
    _settings,
    app,
    console,
)


@app.command()
def report(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Snapshot date (default: the latest snapshot).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="HTML file to write.")] = None,
    config: ConfigOption = None,
) -> None:
    """Write a self-contained HTML report of a snapshot: whale curve, gaps, actions, data quality."""
    from servio.lake import Lake
    from servio.report import default_report_path, write_report

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
    from servio.lake import Lake
    from servio.report.export import EXPORT_ACTIONS, FORMATS, export_customers

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


@app.command()
def maintain(
    retention_hours: Annotated[
        int | None,
        typer.Option(help="Keep superseded files this long (default: vacuum_retention_hours)."),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait if another run holds the lake.")
    ] = 0.0,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """Compact small files, checkpoint the Delta logs and vacuum superseded files older than
    the retention (servio also does this by itself once enough publications piled up)."""
    from servio.config import ConfigError, load_settings
    from servio.steps import results

    out = Output(as_json, quiet)
    started = datetime.now(UTC)
    # Validated like the setting it overrides, once; never put into the environment.
    override = {} if retention_hours is None else {"vacuum_retention_hours": retention_hours}
    try:
        settings = load_settings(config, overrides=override)
    except ConfigError as exc:
        record = results.RunRecord(results.MAINTAIN, "", None, started, error=str(exc))
        out.problem(f"[red]configuration error[/red]\n{escape(str(exc))}")
        out.document(results.document(record, results.USAGE))
        raise typer.Exit(results.USAGE) from None
    out.say(f"servio maintain: [bold]{escape(settings.curated_root)}[/bold]")
    from servio.lake import LakeBusy
    from servio.steps import sequence
    from servio.steps.context import RunContext

    ctx = RunContext.start(settings, "maintain")
    record = results.RunRecord(results.MAINTAIN, ctx.run_id, settings, started)
    plan = sequence.Plan(
        ingest=None, snapshot=None, data_docs=False, maintain=True, wait_seconds=wait
    )
    timed = sequence.Timed()
    code = results.OK
    try:
        with out.status("Maintaining the lake…"):
            outcome = sequence.run(ctx, plan, timed)
        record.add(outcome, timed.seconds)
    except LakeBusy as exc:
        record.error, code = str(exc), results.BUSY
    except OSError as exc:
        record.error, record.changed_lake, code = str(exc), True, results.IO_ERROR
    record.seconds = dict(timed.seconds)
    problem = results.write(record, code)
    if problem:
        out.problem(f"[yellow]{escape(problem)}[/yellow]")
    if record.error:
        colour = "yellow" if code == results.BUSY else "red"
        out.problem(f"[{colour}]{escape(record.error)}[/{colour}]")
    else:
        lake = ctx.lake
        table = Table(
            title=f"servio maintain {lake.root} (retention {settings.vacuum_retention_hours} h)"
        )
        for column in ("table", "files compacted", "files deleted"):
            table.add_column(column, justify="left" if column == "table" else "right")
        for name, counts in record.maintained.items():
            table.add_row(name, f"{counts['files_compacted']:,}", f"{counts['files_deleted']:,}")
        out.say(table)
    out.document(results.document(record, code))
    raise typer.Exit(code)
