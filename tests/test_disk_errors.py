"""A full disk or a failing write mid-run: the run fails with a clear message, the curated
tables are unchanged (or, after the publication's commit point, rolled forward by the next
run), and a rerun once space is freed gives the tables of a run that never failed."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from servio import faults
from tests import faults_harness as h
from tests.runs import REQUIRED_ONLY, run

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e

NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _run(config: Path) -> None:
    """Rules are not under test here; the GX suite costs ~1.5 s per file."""
    run(config, REQUIRED_ONLY)


@pytest.fixture(scope="module")
def exports(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, list, list, Path, dict]]:
    base = tmp_path_factory.mktemp("disk-reference")
    first, rest = h.make_exports(base / "exports")
    config = h.new_lake(base / "lake", first, base / "exports", None)
    _run(config)
    shutil.copytree(base / "lake" / "curated", base / "after_first")
    full = h.new_lake(base / "full", first + rest, base / "exports", base / "after_first")
    _run(full)
    yield base / "exports", first, rest, base / "after_first", h.tables(full)


def _tables_digest(config: Path) -> dict[str, str]:
    curated = config.parent / "curated"
    return {k: v for k, v in h.digest(curated).items() if not k.startswith("_servio/")}


def _nth_time(nth: int, error: OSError, when: Callable[..., bool] = lambda **_: True) -> Any:
    """A fault-point action raising `error` the `nth` time the point is reached (and `when`)."""
    calls = 0

    def action(**details: Any) -> None:
        nonlocal calls
        if when(**details):
            calls += 1
            if calls == nth:
                raise error

    return action


# A full disk at each place of a run where the tables are still as they were: what to break,
# at which fault point (`servio.faults`), and which time the point is reached.
FAULTS: dict[str, tuple[str, Callable[..., None]]] = {
    "staging a landed file": ("writing_staged_file", _nth_time(3, NO_SPACE)),
    "staging a partition": ("writing_partition_file", _nth_time(4, NO_SPACE)),
    "writing the publication plan": ("before_publication_commit", _nth_time(1, NO_SPACE)),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_no_space_before_the_commit_changes_nothing_and_a_rerun_succeeds(
    fault: str, exports: tuple, tmp_path: Path
) -> None:
    raw_source, first, rest, after_first, expected = exports
    config = h.new_lake(tmp_path, first + rest, raw_source, after_first)
    raw, before = h.digest(tmp_path / "raw"), _tables_digest(config)
    point, make = FAULTS[fault]
    with faults.inject(point, make), pytest.raises(OSError) as failure:
        _run(config)
    assert failure.value.errno == errno.ENOSPC
    if fault != "staging a landed file":
        assert "nothing was published" in str(failure.value)
    assert _tables_digest(config) == before
    h.assert_consistent(config, raw)
    assert not (tmp_path / "curated" / "_servio" / "run.lock").exists()
    _run(config)  # space is freed
    h.assert_finished(config)
    h.assert_same_tables(config, expected)


def test_a_write_error_after_the_commit_is_rolled_forward(
    exports: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publication is committed (its plan written), two data files moved into their
    table, then a rename fails (EIO) before the first table's Delta commit. The operating
    system's `os.replace` is what breaks (servio's code is not patched)."""
    raw_source, first, rest, after_first, expected = exports
    config = h.new_lake(tmp_path, first + rest, raw_source, after_first)
    raw = h.digest(tmp_path / "raw")
    real = os.replace
    calls = 0

    def broken(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        # the moves of the publication out of staging, not the atomic JSON writes (.tmp)
        if "/publish/" in str(source) and not str(source).endswith(".tmp"):
            calls += 1
            if calls == 3:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(source, target, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", broken)
        with pytest.raises(OSError):
            _run(config)
    assert (tmp_path / "curated" / "_servio" / "publication.json").exists()
    h.assert_consistent(config, raw)
    _run(config)
    h.assert_finished(config)
    h.assert_same_tables(config, expected)


def test_a_really_full_filesystem(exports: tuple, tmp_path: Path) -> None:
    """The curated root on a tiny tmpfs, filled up: a real ENOSPC wherever it strikes."""
    raw_source, first, rest, after_first, expected = exports
    mount = tmp_path / "curated"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        shutil.copytree(after_first, mount, dirs_exist_ok=True)
        config = h.new_lake(tmp_path, first + rest, raw_source, None)
        raw, before = h.digest(tmp_path / "raw"), _tables_digest(config)
        ballast = mount / "ballast"
        free = shutil.disk_usage(mount).free
        with open(ballast, "wb") as handle:
            handle.truncate(0)
            handle.write(b"\0" * max(free - 48 * 1024, 0))
        with pytest.raises(OSError) as failure:
            _run(config)
        print(f"full tmpfs: {failure.value!r}")
        assert "nothing was published" in str(failure.value)
        assert _tables_digest(config) == before | {"ballast": h.digest(mount)["ballast"]}
        h.assert_consistent(config, raw)
        ballast.unlink()  # space is freed
        _run(config)
        h.assert_finished(config)
        h.assert_same_tables(config, expected)
    finally:
        subprocess.run(["umount", str(mount)], check=False)
