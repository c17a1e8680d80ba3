"""The raw zone as a source of Prefect events: one `servio.raw.file.landed` event per complete
file (watcher or one-off scan), and the catch-up runs `servio serve` starts for files that
landed while nothing was serving."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from servio.config import Settings
from servio.raw import landing
from servio.raw.landing import LandedFile
from servio.raw.paths import UnsafePath, landed_file, local_root

log = logging.getLogger("servio.flows.watch")

FILE_LANDED = "servio.raw.file.landed"
CURATED_UPDATED = "servio.curated.updated"
# Fixed namespace: the same content at the same path always gives the same event id,
# so Prefect's trigger service drops a repeated event (it remembers ids for 30 minutes).
EVENT_NAMESPACE = uuid.UUID("6f1d2a8e-4c0b-5e39-9a57-3f0c1e6b7d21")
# Change notifications arriving within this many milliseconds are one look (a sync tool's
# create, writes and rename); the second look, which proves the size stable, follows
# SETTLE_SECONDS later.
DEBOUNCE_MS = 200
SETTLE_SECONDS = 0.5


def event_id(landed: LandedFile) -> uuid.UUID:
    # The absolute path, not the relative one: two raw zones served by one Prefect server
    # must not share ids (the server would drop the second zone's event as a repeat).
    return uuid.uuid5(EVENT_NAMESPACE, f"{landed.path}\n{landed.sha256}")


def emit_landed(landed: LandedFile) -> uuid.UUID:
    """Emit `servio.raw.file.landed` for one file; the id depends only on path + content."""
    from prefect.events import emit_event

    identifier = event_id(landed)
    emit_event(
        event=FILE_LANDED,
        resource={
            "prefect.resource.id": f"servio.raw.{landed.relative_path}",
            "prefect.resource.name": landed.relative_path,
        },
        payload={
            "path": landed.relative_path,
            "source": landed.source,
            "sha256": landed.sha256,
            "size_bytes": landed.size_bytes,
        },
        id=identifier,
    )
    log.info("event %s for %s (%s)", identifier, landed.relative_path, landed.sha256)
    return identifier


def flush_events() -> None:
    """Send every queued event before returning (a CLI command exits right after)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()


def request_ingest(landed: LandedFile) -> object:
    """Ask for an ingest run for a landed file; none is created while one is already queued
    (it will ingest this file too: a run takes every file pending when it starts)."""
    from servio.flows.dispatch import INGEST, request_run

    return request_run(INGEST, f"ingest {landed.relative_path}", {"path": landed.relative_path})


def land(landed: LandedFile) -> None:
    """What the watcher does for a complete file: the event (lineage in the UI) and a run."""
    emit_landed(landed)
    request_ingest(landed)


def scan(settings: Settings) -> list[LandedFile]:
    """Emit one event per pending file, and ask for one ingest run for all of them."""
    from servio.lake import Lake
    from servio.steps.discover import unsettled

    files = unsettled(settings, Lake(settings.curated_root))
    for landed in files:
        emit_landed(landed)
    flush_events()
    if files:
        request_ingest(files[0])
    return files


def catch_up(settings: Settings, wait_seconds: float = 120.0) -> list[LandedFile]:
    """Files no run has handled (landed while nothing watched, or whose run crashed or was
    killed): one ingest run for all of them, unless an ingest run is queued or running
    (it, or the run the watcher asks for after it, takes them). Also a snapshot run when
    the latest snapshot is older than the ledger. An event could not do this: the trigger
    service drops an event id it saw in the last 30 minutes, and a file's id never changes.
    """
    from prefect.exceptions import ObjectNotFound

    from servio.flows.dispatch import INGEST, SNAPSHOT, request_run
    from servio.lake import Lake
    from servio.steps.discover import unsettled

    lake = Lake(settings.curated_root)
    files = unsettled(settings, lake)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if files:
                more = f" (+{len(files) - 1})" if len(files) > 1 else ""
                run = request_run(
                    INGEST,
                    f"ingest {files[0].relative_path}{more}",
                    {"path": files[0].relative_path},
                    only_when_idle=True,
                )
                if run is not None:
                    log.info("catch-up: an ingest run for %d pending file(s)", len(files))
            elif snapshot_behind(settings, lake):
                request_run(
                    SNAPSHOT, "snapshot latest", {}, only_when_idle=True, match=("as_of", "force")
                )
            return files
        except ObjectNotFound:  # `serve` has not registered the deployments yet
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def snapshot_behind(settings: Settings, lake: object) -> bool:
    """Whether the latest date's snapshot misses data the ledger holds (its input
    fingerprint changed since it was published), e.g. its run was killed."""
    from servio.lake import Lake
    from servio.steps.snapshot import is_done, latest_activity_date

    assert isinstance(lake, Lake)
    latest = latest_activity_date(lake, settings)
    return latest is not None and not is_done(settings, lake, latest)


@dataclass(frozen=True)
class _Seen:
    size: int
    mtime_ns: int


class Watcher:
    """Looks at the raw zone when the file system says something changed there (watchfiles:
    inotify, FSEvents, ReadDirectoryChangesW) and at least every `poll_seconds` (where no
    notification comes, e.g. a network file system, looking is all there is). A file is
    complete once its name is not in flight and its size and mtime are the same on two looks
    in a row, `settle_seconds` apart after a change. Each (path, content) is emitted once."""

    def __init__(
        self,
        settings: Settings,
        poll_seconds: float = 1.0,
        emit: Callable[[LandedFile], object] = land,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self.root = local_root(settings.raw_root)
        self.emit = emit  # Prefect's event client; a test collects the files instead
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.settle_seconds = min(settle_seconds, poll_seconds)
        self._previous: dict[str, _Seen] = {}
        self._done: dict[str, _Seen] = {}
        self._emitted: set[tuple[str, str | None]] = set()
        self._stop = threading.Event()

    def _candidates(self) -> Iterator[tuple[str, Path]]:
        root = self.root.resolve()
        if not root.exists():
            return
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(landing.is_in_flight(part) for part in relative.parts):
                continue
            if path.is_file():
                yield relative.as_posix(), path

    def _already_ingested(self) -> set[tuple[str, str]]:
        from servio.lake import Lake
        from servio.schemas.tables import INGEST_LEDGER

        ledger = Lake(self.settings.curated_root).scan(INGEST_LEDGER).collect()
        return set(zip(ledger["source_file"].to_list(), ledger["sha256"].to_list(), strict=True))

    def poll(self) -> list[LandedFile]:
        """One pass: emit events for files that became complete since the last pass."""
        current: dict[str, _Seen] = {}
        for relative, path in self._candidates():
            try:
                stat = path.stat()
            except OSError:
                continue  # moved or deleted between listing and stat
            current[relative] = _Seen(stat.st_size, stat.st_mtime_ns)
        stable = [
            rel
            for rel, seen in current.items()
            if self._previous.get(rel) == seen and self._done.get(rel) != seen
        ]
        self._previous = current
        emitted: list[LandedFile] = []
        if not stable:
            return emitted
        known = self._already_ingested() | self._emitted
        for relative in stable:
            try:
                landed = landed_file(self.root, relative)
            except (UnsafePath, OSError) as exc:
                log.warning("not emitting %s: %s", relative, exc)
                self._done[relative] = current[relative]
                continue
            self._done[relative] = current[relative]
            if landed.sha256 is None:  # unreadable: `servio run` records why
                log.warning("not emitting %s: %s", relative, landed.problem)
                continue
            if (landed.relative_path, landed.sha256) in known:
                continue
            self.emit(landed)
            self._emitted.add((landed.relative_path, landed.sha256))
            emitted.append(landed)
        return emitted

    def seed(self, files: list[LandedFile]) -> None:
        """Files already handed to an ingest run: do not emit them again."""
        self._emitted.update((f.relative_path, f.sha256) for f in files if f.sha256)

    def run(self) -> None:
        """Look now, then on every change notification (grouped over DEBOUNCE_MS) and every
        `poll_seconds` without one, until `stop`. After a change, a second look follows
        `settle_seconds` later: a file that stopped growing is emitted then, not a poll later."""
        from watchfiles import watch

        log.info("watching %s (on change, and every %.1fs)", self.root, self.poll_seconds)
        self._look()
        for changes in watch(
            self.root,
            watch_filter=None,  # the look decides what counts (in-flight names, stability)
            debounce=DEBOUNCE_MS,
            rust_timeout=max(1, round(self.poll_seconds * 1000)),
            yield_on_timeout=True,
            stop_event=self._stop,
            raise_interrupt=False,
            ignore_permission_denied=True,
        ):
            self._look()
            if changes and not self._stop.wait(self.settle_seconds):
                self._look()

    def _look(self) -> None:
        try:
            self.poll()
        except Exception:  # a watcher must outlive one bad pass (e.g. a vanished file)
            log.exception("watch pass failed; retrying")

    def stop(self) -> None:
        self._stop.set()

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="servio-watch", daemon=True)
        thread.start()
        return thread


def wait_until(predicate: object, timeout: float, interval: float = 0.5) -> bool:
    """Poll `predicate()` until it is true or `timeout` seconds pass (tests, CLI waits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(interval)
    return False
