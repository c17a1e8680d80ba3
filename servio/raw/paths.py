"""A raw-zone path given from outside (an event's payload, a command line): checked to be a
complete file inside the raw root, then described and hashed as discovery would."""

from __future__ import annotations

from pathlib import Path

from servio import objectstore
from servio.raw import landing
from servio.raw.landing import LandedFile


class UnsafePath(ValueError):
    """A path that is not a file inside the raw root (escapes it, or points outside it)."""


def resolve_raw_path(raw_root: str | Path, path: str | Path) -> Path:
    """The absolute path of `path` (relative to the raw root, or absolute) inside the raw root.

    Refuses `..` components, absolute paths elsewhere and symlinks that resolve outside the
    root: an event is outside input, and the raw zone is the only place servio reads from.
    """
    root = local_root(raw_root).resolve()
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


def local_root(raw_root: str | Path) -> Path:
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
