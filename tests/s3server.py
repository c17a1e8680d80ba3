"""An S3-compatible server on loopback for the object-storage tests (moto's server mode),
and the AWS settings that point servio at it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

# moto, boto3 and s3fs are imported where they are used: together ~1 s that every pytest
# worker would pay while collecting, whether or not it runs an object-storage test.

ACCESS_KEY_ID = "AKIASERVIOTESTKEY0001"
# Distinctive, so that finding it anywhere (logs, lake objects, errors) is unambiguous.
SECRET_ACCESS_KEY = "servio-test-secret-7f3aQx9Lk2Zp"


@contextmanager
def loopback_s3() -> Iterator[str]:
    """Start moto on 127.0.0.1 with an ephemeral port; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_environment(endpoint: str, config_dir: Path) -> dict[str, str]:
    """The standard AWS variables servio's libraries read; no user config files."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(config_dir / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "aws-credentials"),
    }


@contextmanager
def s3_environment(config_dir: Path, buckets: tuple[str, ...]) -> Iterator[str]:
    """Loopback S3 with the buckets made, and only these AWS variables set (a test's own
    AWS settings, if any, are hidden and restored afterwards)."""
    from s3fs import S3FileSystem

    # servio keeps one S3 filesystem per process, made with the settings of its time.
    S3FileSystem.clear_instance_cache()
    with loopback_s3() as endpoint, pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        for name, value in aws_environment(endpoint, config_dir).items():
            patch.setenv(name, value)
        for bucket in buckets:
            create_bucket(bucket)
        yield endpoint
    S3FileSystem.clear_instance_cache()


def _client() -> Any:
    import boto3

    return boto3.client("s3")


def create_bucket(name: str) -> None:
    client = _client()
    with suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=name)


def upload_tree(local: Path, bucket: str, prefix: str, only: str = "") -> None:
    client = _client()
    for path in sorted(p for p in local.rglob("*") if p.is_file() and only in p.name):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")


def objects(bucket: str, prefix: str) -> dict[str, str]:
    """Every object under the prefix: key → ETag (changes whenever the content does)."""
    client = _client()
    found: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found |= {item["Key"]: item["ETag"] for item in page.get("Contents", [])}
    return found


def read_object(bucket: str, key: str) -> bytes:
    body: bytes = _client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def write_object(bucket: str, key: str, body: bytes) -> None:
    _client().put_object(Bucket=bucket, Key=key, Body=body)
