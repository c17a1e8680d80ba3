"""Where the lake's bytes live: a local folder or an `s3://bucket/prefix`, behind one `Store`.

servio never handles storage credentials: s3fs (botocore), delta-rs and Polars (object_store)
read them, the endpoint and the region from the standard AWS environment and config files
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION, ~/.aws/…).
Settings hold only the URL, and a URL carrying credentials is refused (docs/OBJECT_STORAGE.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
from fsspec import AbstractFileSystem

SCHEMES = ("s3",)


def is_object_url(location: str | os.PathLike[str]) -> bool:
    """True for `s3://…`; a local path (even one containing a colon) is not a URL."""
    return isinstance(location, str) and urlsplit(location).scheme in SCHEMES


def check_root(location: str) -> str:
    """A local path, or `s3://bucket[/prefix]` without credentials, query or fragment."""
    if "://" not in location:
        return location
    parts = urlsplit(location)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"a local path or s3://bucket/prefix; the scheme {parts.scheme!r} is not supported"
        )
    if "@" in parts.netloc:
        # Never echo the value: it holds a secret.
        raise ValueError(
            "credentials do not belong in the URL; set them in the AWS environment or "
            "config (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE …)"
        )
    if not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"s3://bucket/prefix (a bucket, no query), got {location!r}")
    return location.rstrip("/")


def open_root(url: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem (one per process: a new one costs a new AWS session, which reads the
    AWS settings then) and the root as `bucket/prefix`. Listings are never cached: other
    processes write the lake and land raw files, so a listing must be fresh."""
    fs, root = fsspec.core.url_to_fs(url, use_listings_cache=False)
    return fs, root.rstrip("/")


def to_url(fs: AbstractFileSystem, key: str) -> str:
    """`bucket/prefix/x` → `s3://bucket/prefix/x`, the form Polars and PyArrow read."""
    return fs.unstrip_protocol(key)


def local_site_dir(url: str) -> Path:
    """Where the HTML report and Data Docs of an object-store lake go: a local folder named
    after the bucket and prefix under `servio-site/` in the working directory (GX renders
    Data Docs to a local folder; browsers open local files)."""
    parts = urlsplit(url)
    return Path("servio-site") / parts.netloc / parts.path.strip("/")


def delta_storage_options(url: str) -> dict[str, str] | None:
    """What delta-rs needs beyond the AWS environment it reads itself: the endpoint of an
    S3-compatible store (and plain HTTP when that endpoint says so). No credential is ever
    passed: delta-rs takes them from the environment, like s3fs and Polars."""
    if not is_object_url(url):
        return None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return {}
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": str(endpoint.startswith("http:"))}


class Store:
    """The few file operations the lake needs besides Delta commits, on a local folder or an
    object store: whole-object writes, an exclusive create, moves and deletes. Keys are
    relative to the root, with `/` separators. Object stores have no rename: a move there is a
    server-side copy then a delete, and every write is one PUT (whole or absent)."""

    def __init__(self, root: str | Path) -> None:
        self.root = check_root(str(root))
        self.is_local = not is_object_url(self.root)
        self._fs: AbstractFileSystem | None = None
        self._base = (
            str(Path(self.root).absolute()) if self.is_local else self.root.split("://", 1)[1]
        )

    def __getstate__(self) -> dict[str, Any]:
        # Tasks on Dask workers get the store pickled; each process opens its own connection.
        return {**self.__dict__, "_fs": None}

    @property
    def fs(self) -> AbstractFileSystem:
        if self._fs is None:
            self._fs, _ = open_root(self.root)
        return self._fs

    def url(self, key: str = "") -> str:
        """The absolute local path or the `s3://` URL of a key (what delta-rs, Polars and
        DuckDB are given)."""
        if self.is_local:
            return str(Path(self._base, key)) if key else self._base
        return f"{self.root}/{key}" if key else self.root

    def local(self, key: str = "") -> Path:
        if not self.is_local:
            raise TypeError(f"{self.root} is an object store: keys, not folders")
        return Path(self._base, key)

    def _key(self, key: str) -> str:
        return f"{self._base}/{key}"

    # -- reading ---------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self.local(key).exists() if self.is_local else bool(self.fs.exists(self._key(key)))

    def read_json(self, key: str) -> dict | None:
        try:
            if self.is_local:
                return json.loads(self.local(key).read_text(encoding="utf-8"))
            return json.loads(self.fs.cat_file(self._key(key)))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def children(self, key: str) -> list[str]:
        """Names directly under a folder or prefix (none if it does not exist)."""
        try:
            if self.is_local:
                return sorted(p.name for p in self.local(key).iterdir())
            return sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(self._key(key), detail=False))
        except FileNotFoundError:
            return []

    # -- writing ---------------------------------------------------------------------------
    def write_json(self, key: str, payload: object) -> None:
        """Replace the object whole: a reader (or a crash) sees the old content or the new."""
        data = json.dumps(payload, indent=2, default=str).encode()
        if not self.is_local:
            self.fs.pipe_file(self._key(key), data)
            return
        path = self.local(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        _write_synced(temporary, data)
        os.replace(temporary, path)
        fsync_dir(path.parent)

    def create_json(self, key: str, payload: object) -> bool:
        """Create the object with its content only if it does not exist; False if it does. It
        never exists empty, so a process killed while creating it leaves nothing to judge."""
        data = json.dumps(payload, indent=2, default=str).encode()
        if not self.is_local:
            try:
                self.fs.pipe_file(self._key(key), data, mode="create")  # If-None-Match: *
            except FileExistsError:
                return False
            except FileNotFoundError as exc:
                raise self._unreachable() from exc
            return True
        path = self.local(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A hard link of a complete file: the object appears with its content.
        claim = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        _write_synced(claim, data)
        try:
            os.link(claim, path)
        except FileExistsError:
            return False
        finally:
            claim.unlink()
        return True

    def check_reachable(self) -> None:
        """An object store's bucket must exist before anything is read or written: a typo in
        the root would otherwise surface as a table format's generic error."""
        if self.is_local:
            return
        bucket = self._base.split("/", 1)[0]
        try:
            found = self.fs.exists(bucket)
        except (FileNotFoundError, PermissionError) as exc:
            raise self._unreachable() from exc
        if not found:
            raise self._unreachable()

    def _unreachable(self) -> FileNotFoundError:
        return FileNotFoundError(
            f"{self.root}: the bucket does not exist or cannot be reached with the AWS settings "
            "in use"
        )

    def put_file(self, source: Path, key: str) -> None:
        """Move a local file to the key: a rename on the lake's own disk, an upload (one PUT
        per part, visible only once complete) to an object store."""
        if self.is_local:
            target = self.local(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)
            return
        self.fs.put_file(str(source), self._key(key))
        source.unlink()

    def place(self, source: str, target: str) -> None:
        """Put a staged key's content at `target`: a rename on disk; on S3 (no rename) a
        server-side copy, the source left for the caller to delete with its whole folder
        (`delete_tree`: one bulk request, not a DELETE per object)."""
        if self.is_local:
            destination = self.local(target)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.local(source), destination)
            return
        self.fs.copy(self._key(source), self._key(target))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.is_local:
                self.local(key).unlink()
            else:
                self.fs.rm_file(self._key(key))

    def delete_tree(self, key: str) -> None:
        if self.is_local:
            shutil.rmtree(self.local(key), ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._key(key), recursive=True)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
