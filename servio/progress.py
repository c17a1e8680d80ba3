"""A tiny progress hook: the CLI plugs in a rich progress bar, flows report steps to it.

Flows and tasks run in this process (threads), so a module-level reporter is enough; with
no reporter plugged in (a deployment run, a test) reporting does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

Reporter = Callable[[str, int, int], None]  # (step, done, total)
_reporter: Reporter | None = None


def plug(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def report(step: str, done: int, total: int) -> None:
    if _reporter is not None:
        _reporter(step, done, total)
