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


def scan(settings: Settings) -> list[LandedFile]:
    """Emit one event per pending file (new content, or known content under a new name)."""
    from servio.lake import Lake
    from servio.steps.discover import pending_files

    found = pending_files(settings, Lake(settings.curated_root))
    # A file that could not be read has no hash to name its event: `servio run` records why.
    files = sorted(
        (f for f in found.todo + found.duplicates if f.sha256), key=lambda f: f.relative_path
    )
    for landed in files:
        emit_landed(landed)
    flush_events()
    return files


def catch_up(settings: Settings, deployment: str, wait_seconds: float = 120.0) -> list[LandedFile]:
    """Start an ingest run for every file the ledger does not hold yet (e.g. after a crash).

    An event cannot do this: the trigger service drops an event id it saw in the last 30
    minutes, and a file's event id never changes. A second run for a file is harmless.
    """
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    from servio.lake import Lake
    from servio.steps.discover import pending_files

    deadline = time.monotonic() + wait_seconds
    found = pending_files(settings, Lake(settings.curated_root))
    files = sorted(
        (f for f in found.todo + found.duplicates if f.sha256), key=lambda f: f.relative_path
    )
    for landed in files:
        parameters = {
            "path": landed.relative_path,
            "source": landed.source,
            "sha256": landed.sha256,
        }
        while True:
            try:
                run_deployment(deployment, parameters=parameters, timeout=0)
                break
            except ObjectNotFound:  # `serve` has not registered the deployment yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        log.info("catch-up ingest started for %s", landed.relative_path)
    return files


@dataclass(frozen=True)
class _Seen:
    size: int
    mtime_ns: int


class Watcher:
    """Polls the raw zone; a file is complete once its name is not in flight and its size and
    mtime are the same on two polls in a row. Each (path, content) is emitted once."""

    def __init__(
        self,
        settings: Settings,
        poll_seconds: float = 1.0,
        emit: Callable[[LandedFile], object] = emit_landed,
    ) -> None:
        self.root = local_root(settings.raw_root)
        self.emit = emit  # Prefect's event client; a test collects the files instead
        self.settings = settings
        self.poll_seconds = poll_seconds
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
        log.info("watching %s every %.1fs", self.root, self.poll_seconds)
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # a watcher must outlive one bad pass (e.g. a vanished file)
                log.exception("watch pass failed; retrying")
            self._stop.wait(self.poll_seconds)

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
