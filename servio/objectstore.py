"""Object-store roots (`s3://bucket/prefix`): recognise them and open them through fsspec.

servio never handles storage credentials: s3fs (botocore) and Polars (object_store) read
them, the endpoint and the region from the standard AWS environment and config files
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION, ~/.aws/…).
Settings hold only the URL, and a URL carrying credentials is refused (docs/OBJECT_STORAGE.md).
"""

from __future__ import annotations

import os
from pathlib import Path
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
