"""The `servio` command (`servio.cli:app`): one module per group of commands, all registered
on one Typer app — `run` (generate, run), `lake` (report, docs, maintain), `server` (serve,
watch, scan, backfill)."""

from servio.cli import lake, run, server
from servio.cli.app import _quiet_defaults, app, main

__all__ = ["_quiet_defaults", "app", "lake", "main", "run", "server"]
