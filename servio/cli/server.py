"""Operating on a Prefect server (SPEC §5): `servio serve`, `watch`, `scan` and `backfill`."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    pass

from servio.cli.app import ConfigOption, _progress_bar, _quiet_defaults, _settings, app, console


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

    from servio.flows.deployments import INGEST_DEPLOYMENT, build_deployments
    from servio.flows.watch import Watcher, catch_up

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
    from servio.flows.watch import Watcher

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
    from servio.flows.watch import scan as emit_pending

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
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process", help="Snapshot in this process even when a Prefect server is set."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Recompute the snapshots from --from to --to; dates already done are skipped. Runs the
    build-snapshot deployment per date when PREFECT_API_URL is set (unless --in-process),
    else in this process."""
    _quiet_defaults()
    settings = _settings(config)
    from servio.steps.backfill import (
        FAILED,
        DateOutcome,
        OneDate,
        dates_between,
        run_backfill,
        snapshot_here,
    )

    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        total = len(dates_between(first, last))
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    on_server = not in_process and _api_url() is not None
    one: OneDate = snapshot_here
    if on_server:
        from servio.flows.backfill import snapshot_on_server

        one = snapshot_on_server
    where = "on the Prefect server" if on_server else "in this process"
    with _progress_bar() as bar:
        task = bar.add_task(f"backfill {where}", total=total)

        def on_done(outcome: DateOutcome) -> None:
            bar.advance(task)

        outcomes = run_backfill(settings, first, last, parallel, force, one, wait, on_done=on_done)
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
