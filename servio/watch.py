"""The raw zone as a source of Prefect events: one `servio.raw.file.landed` event per complete
file (watcher or one-off scan), and the path checks every event-driven ingest relies on."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from servio import landing, objectstore
from servio.config import Settings
from servio.landing import LandedFile

log = logging.getLogger("servio.watch")

FILE_LANDED = "servio.raw.file.landed"
CURATED_UPDATED = "servio.curated.updated"
# Fixed namespace: the same content at the same path always gives the same event id,
# so Prefect's trigger service drops a repeated event (it remembers ids for 30 minutes).
EVENT_NAMESPACE = uuid.UUID("6f1d2a8e-4c0b-5e39-9a57-3f0c1e6b7d21")


class UnsafePath(ValueError):
    """A path that is not a file inside the raw root (escapes it, or points outside it)."""


def resolve_raw_path(raw_root: str | Path, path: str | Path) -> Path:
    """The absolute path of `path` (relative to the raw root, or absolute) inside the raw root.

    Refuses `..` components, absolute paths elsewhere and symlinks that resolve outside the
    root: an event is outside input, and the raw zone is the only place servio reads from.
    """
    root = _local_root(raw_root).resolve()
    candidate = Path(path)
    if ".." in candidate.parts:
        raise UnsafePath(f"refused {str(path)!r}: '..' is not allowed in a raw-zone path")
    full = candidate if candidate.is_absolute() else root / candidate
    resolved = full.resolve()
    if not resolved.is_relative_to(root) or resolved == root:
        raise UnsafePath(
            f"refused {str(path)!r}: it resolves to {resolved}, outside the raw root {root}"
        )
    return resolved


def _local_root(raw_root: str | Path) -> Path:
    """Watching and file events need a local or mounted raw zone: an object store has no
    folder to poll (its own event notifications would be the way; docs/OBJECT_STORAGE.md)."""
    if objectstore.is_object_url(raw_root):
        raise ValueError(
            f"{raw_root}: watching and file events need a local or mounted raw root; "
            "for an object store run `servio run` (cron) instead"
        )
    return Path(raw_root)


def landed_file(raw_root: str | Path, path: str | Path) -> LandedFile:
    """Describe (and hash) one complete file of the raw zone, as `landing.discover` would.

    A file that cannot be read (permission denied) comes back with its `problem` and no hash.
    """
    resolved = resolve_raw_path(raw_root, path)
    root = Path(raw_root).resolve()
    relative = resolved.relative_to(root)
    if any(landing.is_in_flight(part) for part in relative.parts):
        raise UnsafePath(f"refused {str(path)!r}: the name marks a file still being written")
    landed = landing.describe_local(root, resolved)
    if landed is None:
        raise FileNotFoundError(f"no file at {resolved}")
    return landed


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
    from servio.pipeline import pending_files
    from servio.storage import Lake

    todo, duplicates = pending_files(settings, Lake(settings.curated_root))
    # A file that could not be read has no hash to name its event: `servio run` records why.
    files = sorted((f for f in todo + duplicates if f.sha256), key=lambda f: f.relative_path)
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

    from servio.pipeline import pending_files
    from servio.storage import Lake

    deadline = time.monotonic() + wait_seconds
    todo, duplicates = pending_files(settings, Lake(settings.curated_root))
    files = sorted((f for f in todo + duplicates if f.sha256), key=lambda f: f.relative_path)
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

    def __init__(self, settings: Settings, poll_seconds: float = 1.0) -> None:
        self.root = _local_root(settings.raw_root)
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
        from servio.schemas.tables import INGEST_LEDGER
        from servio.storage import Lake

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
            emit_landed(landed)
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
