"""The `servio` command's shared parts: the Typer app, the console, and how options become
settings (command-line choices win over the file and the environment, never written to it)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

if TYPE_CHECKING:
    from servio.config import Settings

# Imports that cost (Polars, fsspec, pydantic, Prefect, Great Expectations) happen inside the
# commands, after their first line: `servio run` says what it is about to do at once.


app = typer.Typer(
    help="servio: customer-service exports in, curated quality and profitability tables out.",
    no_args_is_help=True,
    add_completion=False,
    # `-h` as well as `--help`, on every command (Click hands it down to subcommands).
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,  # a servio bug is one line (exit 1), never a traceback
)
console = Console()
err_console = Console(stderr=True)
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML configuration (default: ./servio.toml).")
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the run results (schemas/run_results.schema.json) to stdout instead of "
        "the summary; messages go to stderr.",
    ),
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only problems (and errors).")
]


def _version(value: bool) -> None:
    if value:
        from servio.steps.results import servio_version

        typer.echo(f"servio {servio_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """servio: customer-service exports in, curated quality and profitability tables out."""


@dataclass(frozen=True)
class Seams:
    """Stand-ins for a command's slow parts, handed in as Click's context object
    (`CliRunner().invoke(app, args, obj=Seams(...))`), so a test drives the command's own
    answers (exit codes, messages, the run results) without Prefect and without patching a
    module. Nothing on the command line sets them; unset, the real parts run."""

    run_flow: Callable[..., Any] | None = None  # called as `servio.flows.run.run_pipeline`


def seams(ctx: typer.Context) -> Seams:
    return ctx.obj if isinstance(ctx.obj, Seams) else Seams()


class Output:
    """Where a command's words go: the Rich summary (default), problems only (`--quiet`), or
    nothing but the JSON document on stdout (`--json`; problems on stderr)."""

    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet

    @property
    def chatty(self) -> bool:
        return not (self.as_json or self.quiet)

    def say(self, *parts: Any) -> None:
        """What the command does and did (the summary): the default output only."""
        if self.chatty:
            console.print(*parts)
            console.file.flush()  # a pipe (a scheduler's log) sees each line when printed

    def problem(self, *parts: Any) -> None:
        """Always shown: on stdout, or on stderr under `--json`."""
        where = err_console if self.as_json else console
        where.print(*parts)
        where.file.flush()

    def document(self, doc: dict[str, Any]) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
            sys.stdout.flush()

    @contextlib.contextmanager
    def status(self, message: str) -> Iterator[None]:
        if self.chatty:
            with console.status(message):
                yield
        else:
            yield


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
    # Before Prefect configures logging, servio's warnings (a file refused) would reach the
    # terminal through Python's last-resort handler; the summary says it in words instead.
    logging.getLogger("servio").addHandler(logging.NullHandler())


def _progress_bar(enabled: bool = True) -> Progress:
    """The bar `run` and `backfill` show while they work; gone when they print results."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not enabled,
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


def _settings(
    config: Path | None,
    overrides: dict[str, object] | None = None,
    output: Output | None = None,
) -> Settings:
    from servio.config import ConfigError, load_settings

    try:
        return load_settings(config, overrides=overrides)
    except ConfigError as exc:
        (output or Output()).problem(f"[red]configuration error[/red]\n{escape(str(exc))}")
        raise typer.Exit(2) from None


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
