"""The `servio` command's shared parts: the Typer app, the console, and how options become
settings (command-line choices win over the file and the environment, never written to it)."""

from __future__ import annotations

import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

from servio.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    pass


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


def _settings(config: Path | None, overrides: dict[str, object] | None = None) -> Settings:
    try:
        return load_settings(config, overrides=overrides)
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]\n{escape(str(exc))}")
        raise typer.Exit(2) from None


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
