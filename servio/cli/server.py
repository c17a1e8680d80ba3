"""Operating on a Prefect server (SPEC §5): `servio serve`, `watch`, `scan` and `backfill`."""

from __future__ import annotations

import os
from datetime import date
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import threading
    from pathlib import Path

    from servio.config import Settings
    from servio.flows.warm import WarmPool

from servio.cli.app import (
    ConfigOption,
    JsonOption,
    Output,
    QuietOption,
    _progress_bar,
    _quiet_defaults,
    _settings,
    app,
    console,
)


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _served_runs_log_at_info() -> None:
    """Served runs are child processes that inherit this environment: they log at INFO to
    the Prefect UI (per-file counts, quarantine reasons, timings) while this process, the
    one a person watches, stays terse. Heartbeats let Prefect's zombie automation see a
    run whose runner died."""
    from servio.flows.heal import HEARTBEAT_SECONDS

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")  # what reaches the UI
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")  # the terminal
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    _quiet_defaults()


def _registered(*deployments: str) -> bool:
    """Whether the server knows these deployments (with this serve's settings) yet."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        try:
            for name in deployments:
                client.read_deployment_by_name(name)
        except Exception:
            return False
    return True


@app.command()
def serve(
    watch: Annotated[
        bool, typer.Option("--watch/--no-watch", help="Also watch the raw zone and emit events.")
    ] = True,
    poll: Annotated[float, typer.Option(help="Seconds between two looks at the raw zone.")] = 1.0,
    cron: Annotated[
        str, typer.Option(help="Daily snapshot schedule, in the configured source_timezone.")
    ] = "0 2 * * *",
    runs_per_process: Annotated[
        int,
        typer.Option(
            min=1,
            help="Runs a warm ingest or snapshot process executes before a fresh one replaces "
            "it (1: a fresh, preloaded process per run).",
        ),
    ] = 200,
    config: ConfigOption = None,
) -> None:
    """Register and serve the ingest-file, build-snapshot and backfill deployments on the
    Prefect server at PREFECT_API_URL (and watch the raw zone unless --no-watch).

    Ingest runs execute at most `serve_ingest_runs` at once and each ingests every pending
    file; every `serve_catch_up_seconds` files no run took (a crashed run's) get a run.
    Ingest and snapshot runs execute in warm processes that imported everything once
    (servio.flows.warm); backfill runs in a process of Prefect's runner."""
    _served_runs_log_at_info()
    settings = _settings(config)
    if not _api_url():
        console.print(
            "[red]PREFECT_API_URL is not set[/red]: start a server (`prefect server start`) and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api`"
        )
        raise typer.Exit(2)
    import threading

    from servio.flows.dispatch import INGEST, SNAPSHOT
    from servio.flows.warm import WarmPool

    # Ingest and snapshot runs execute in warm processes (imports and GX loaded once, see
    # flows/warm.py); the rare backfill runs in a process of Prefect's runner, as before.
    # They start first: their imports overlap this process's (the flows, the deployments),
    # and each waits for its deployment to be registered before it looks for runs.
    pool = WarmPool(
        [INGEST] * settings.serve_ingest_runs + [SNAPSHOT],
        on_ready=lambda seconds: console.print(f"warm processes ready in {seconds:.1f}s"),
        runs_per_process=runs_per_process,
    )
    pool.start()
    stop = threading.Event()
    try:
        _serve(settings, pool, stop, watch, poll, cron, config)
    finally:
        stop.set()
        pool.stop()


def _serve(
    settings: Settings,
    pool: WarmPool,
    stop: threading.Event,
    watch: bool,
    poll: float,
    cron: str,
    config: Path | None,
) -> None:
    """`servio serve` once its warm processes are starting: register the deployments, then
    watch and serve until stopped."""
    import threading

    from prefect import serve as prefect_serve

    from servio.flows.deployments import build_deployments
    from servio.flows.dispatch import INGEST, SNAPSHOT
    from servio.flows.heal import catch_up_loop, install_zombie_automation, reap_left_running
    from servio.flows.watch import Watcher, catch_up, wait_until

    ingest, snapshot, backfill = build_deployments(settings, str(config) if config else None, cron)
    ingest.apply()
    snapshot.apply()
    watcher = Watcher(settings, poll)

    from datetime import UTC, datetime

    serve_started = datetime.now(UTC)

    def start() -> None:
        try:
            install_zombie_automation()
            wait_until(lambda: _registered(INGEST, SNAPSHOT), 120)
            reap_left_running([INGEST, SNAPSHOT], serve_started)
        except Exception as exc:
            console.print(f"[yellow]could not check earlier runs: {escape(str(exc))}[/yellow]")
        # Files that landed while nothing was serving (or whose run died with a killed
        # serve) get a run now; the watcher then only emits what lands from here on.
        try:
            watcher.seed(catch_up(settings))
        except Exception as exc:  # the watcher (and the served deployments) must still run
            console.print(f"[yellow]catch-up of pending files failed: {escape(str(exc))}[/yellow]")
        threading.Thread(
            target=catch_up_loop, args=(settings, stop), name="servio-catch-up", daemon=True
        ).start()
        if watch:
            watcher.run()

    threading.Thread(target=start, name="servio-start", daemon=True).start()
    if watch:
        console.print(f"watching [bold]{escape(settings.raw_root)}[/bold] every {poll:g}s")
    console.print(
        f"ingest runs at most {settings.serve_ingest_runs} at once, each in a warm process "
        f"(pids {' '.join(map(str, pool.pids()))}, the last one for snapshots); catch-up every "
        f"{settings.serve_catch_up_seconds:g}s"
    )
    try:
        # Only the rare, long backfill runs on Prefect's runner now (ingest and snapshot runs
        # go to the warm processes): its default look every 10 s, not every second, which
        # cost the server a marking poll a second for a deployment that almost never runs.
        prefect_serve(backfill)
    finally:
        stop.set()
        watcher.stop()


@app.command("watch")
def watch_raw_zone(
    poll: Annotated[float, typer.Option(help="Seconds between two looks at the raw zone.")] = 1.0,
    config: ConfigOption = None,
) -> None:
    """Watch the raw zone: per complete file an event and an ingest run (coalesced), and the
    periodic catch-up — for deployments served elsewhere (a work pool, another `serve`)."""
    _quiet_defaults()
    settings = _settings(config)
    if not _api_url():
        console.print("[red]PREFECT_API_URL is not set[/red]: events need a Prefect server")
        raise typer.Exit(2)
    import threading

    from servio.flows.heal import catch_up_loop
    from servio.flows.watch import Watcher

    console.print(
        f"watching [bold]{escape(settings.raw_root)}[/bold] every {poll:g}s (Ctrl-C stops)"
    )
    watcher = Watcher(settings, poll)
    stop = threading.Event()
    threading.Thread(
        target=catch_up_loop, args=(settings, stop), name="servio-catch-up", daemon=True
    ).start()
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop()
    finally:
        stop.set()


@app.command()
def scan(config: ConfigOption = None) -> None:
    """Emit one `servio.raw.file.landed` event for every pending file and ask for one
    ingest run for them."""
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
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """Recompute the snapshots from --from to --to; dates already done are skipped. Runs the
    build-snapshot deployment per date when PREFECT_API_URL is set (unless --in-process),
    else in this process. Writes one run-results document for the whole backfill."""
    import time
    from datetime import UTC, datetime

    from servio.config import ConfigError, load_settings
    from servio.steps import results

    out = Output(as_json, quiet)
    started_at, started = datetime.now(UTC), time.monotonic()
    _quiet_defaults()

    def stop(record: results.RunRecord, code: int, message: str) -> NoReturn:
        out.problem(message)
        out.document(results.document(record, code))
        raise typer.Exit(code)

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        record = results.RunRecord(results.BACKFILL, "", None, started_at, error=str(exc))
        stop(record, results.USAGE, f"[red]configuration error[/red]\n{escape(str(exc))}")
    from servio.steps.backfill import (
        CANCELLED,
        FAILED,
        NO_DATA,
        BackfillInterrupted,
        DateOutcome,
        OneDate,
        dates_between,
        run_backfill,
        snapshot_here,
    )
    from servio.steps.context import new_run_id

    run_id = new_run_id(results.BACKFILL, started_at)
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        total = len(dates_between(first, last))
        if parallel < 1:
            raise ValueError("--parallel must be at least 1")
    except ValueError as exc:
        record = results.RunRecord(results.BACKFILL, run_id, settings, started_at, error=str(exc))
        stop(record, results.USAGE, f"[red]{escape(str(exc))}[/red]")
    on_server = not in_process and _api_url() is not None
    one: OneDate = snapshot_here
    if on_server:
        from servio.flows.backfill import CANCEL, snapshot_on_server
        from servio.flows.dispatch import SNAPSHOT, NotServed, check_served

        try:
            check_served(SNAPSHOT)
        except NotServed as exc:
            record = results.RunRecord(
                results.BACKFILL, run_id, settings, started_at, error=str(exc)
            )
            stop(record, results.BUSY, f"[red]{escape(str(exc))}[/red]")
        CANCEL.clear()
        one = snapshot_on_server
    where = "on the Prefect server" if on_server else "in this process"
    out.say(f"servio backfill {first} → {last} {where}, parallel {parallel}")
    interrupted = False
    with _progress_bar(enabled=out.chatty) as bar:
        task = bar.add_task(f"backfill {where}", total=total)

        def on_done(outcome: DateOutcome) -> None:
            bar.advance(task)

        try:
            outcomes = run_backfill(
                settings, first, last, parallel, force, one, wait, on_done=on_done
            )
        except BackfillInterrupted as stopped:
            if on_server:
                CANCEL.set()  # the dates waiting on the server are cancelled there
            outcomes, interrupted = stopped.outcomes, True
    asked = (first, last, parallel, force, "server" if on_server else "in_process")
    record = results.backfill_record(
        settings, run_id, started_at, asked, outcomes, time.monotonic() - started
    )
    code = results.backfill_exit_code(outcomes, interrupted)
    problem = results.write(record, code)
    table = Table(title=f"backfill {first} → {last} ({where}, parallel {parallel})")
    for column in ("as_of", "outcome", "customers", "seconds", "detail"):
        table.add_column(column, justify="right" if column in ("customers", "seconds") else "left")
    colours = {FAILED: "red", CANCELLED: "yellow", NO_DATA: "yellow"}
    for o in outcomes:
        colour = colours.get(o.outcome, "green")
        table.add_row(
            o.as_of.isoformat(),
            f"[{colour}]{o.outcome}[/{colour}]",
            f"{o.customers:,}" if o.customers else "",
            f"{o.seconds:.1f}" if o.seconds else "",
            escape(o.detail),
        )
    out.say(table)
    for o in outcomes:
        if o.outcome == FAILED:
            out.problem(f"[red]{o.as_of} failed: {escape(o.detail)}[/red]")
    if problem:
        out.problem(f"[yellow]{escape(problem)}[/yellow]")
    if interrupted:
        out.problem("[yellow]interrupted: dates not started were cancelled[/yellow]")
    out.document(results.document(record, code))
    raise typer.Exit(code)


@app.command()
def status(
    warn_error: Annotated[
        bool, typer.Option("--warn-error", help="Exit 1 on a warning too, not only on an error.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Pending files per source, the last ingest per source and its age (fresh / warn /
    error against freshness_warn_hours and freshness_error_hours), and stale snapshot dates.
    Exit 0 when fresh (or only warnings), 1 on an error (or a warning with --warn-error)."""
    _quiet_defaults()
    settings = _settings(config)
    from datetime import UTC, datetime

    from servio.steps.status import ERROR, WARN
    from servio.steps.status import status as read_status

    try:
        found = read_status(settings, datetime.now(UTC))
    except Exception as exc:
        console.print(f"[red]cannot read the lake: {escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    table = Table(title=f"servio status — {escape(settings.curated_root)}")
    for column in ("source", "pending files", "last ingest (UTC)", "age", "freshness"):
        table.add_column(column, justify="right" if column in ("pending files", "age") else "left")
    colours = {ERROR: "red", WARN: "yellow"}
    for s in found.sources:
        colour = colours.get(s.freshness, "green")
        table.add_row(
            s.source,
            str(s.pending),
            f"{s.last_ingest:%Y-%m-%d %H:%M}" if s.last_ingest else "never",
            f"{s.age_hours:.1f} h" if s.age_hours is not None else "",
            f"[{colour}]{s.freshness}[/{colour}]",
        )
    console.print(table)
    console.print(
        f"freshness: warn after {settings.freshness_warn_hours:g} h, "
        f"error after {settings.freshness_error_hours:g} h"
    )
    if found.missing_snapshot is not None:
        console.print(
            f"[yellow]no snapshot yet for the latest date {found.missing_snapshot}[/yellow]"
        )
    if found.stale_snapshots:
        dates = ", ".join(d.isoformat() for d in found.stale_snapshots)
        console.print(f"[yellow]stale snapshots (inputs changed since): {dates}[/yellow]")
    worst = found.worst
    if worst == ERROR or (warn_error and worst == WARN):
        raise typer.Exit(1)
