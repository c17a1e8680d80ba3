"""A small real lake for reader tests: generated exports, ingested and snapshotted with the
sequence `servio run` uses, without Prefect (faster; no server needed).

Each kind of lake is built once per test process and copied for every module that asks for
one (building one with the real GX suite costs ~10 CPU-seconds; a copy, milliseconds): a
module gets its own lake, which it may change, with the same tables as a fresh build."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from servio.config import Settings, load_settings
from servio.lake.lake import Lake
from servio.lake.publication import write_catalog
from servio.tools.generate import GenerateOptions, generate
from tests.runs import run

RUN_ID = "20260101T000000Z-lake"  # the run that built a lake (ids sort by their start)
_built: dict[str, Path] = {}


def build_lake(root: Path, days: int = 60, copy: bool = True) -> tuple[Settings, Lake]:
    """A landing zone of 300 customers over `days` days under `root/raw`, ingested and
    snapshotted into `root/curated` as `servio run` does. `copy=False` builds it in place:
    a snapshot's fingerprint covers every setting, the lake's paths included, so only a lake
    built where it lies has its snapshots "done" (`servio.steps.snapshot.is_done`)."""

    def build(where: Path) -> None:
        generate(where / "raw", GenerateOptions(customers=300, days=days, seed=3))
        run(configure(where), run_id=RUN_ID)

    if not copy:
        build(root)
        settings = load_settings(root / "servio.toml")
    else:
        settings = copy_of(f"lake-{days}d", build, root)
    return settings, Lake(settings.curated_root)


def configure(root: Path) -> Settings:
    """`root/servio.toml` naming `root/raw` and `root/curated`; its settings."""
    config = root / "servio.toml"
    config.write_text(
        f'raw_root = "{(root / "raw").as_posix()}"\n'
        f'curated_root = "{(root / "curated").as_posix()}"\n'
    )
    return load_settings(config)


def copy_of(kind: str, build: Callable[[Path], None], root: Path) -> Settings:
    """A copy under `root` of the lake `build` makes (raw and curated, modification times
    kept, so the ledger sees the raw files unchanged); built on the first call per process.
    The DuckDB catalog names its files by absolute path: it is written again for the copy."""
    if kind not in _built:
        where = Path(tempfile.mkdtemp(prefix=f"servio-{kind}-"))
        atexit.register(shutil.rmtree, where, ignore_errors=True)
        build(where)
        _built[kind] = where
    for part in ("raw", "curated"):
        shutil.copytree(_built[kind] / part, root / part, symlinks=True)
    settings = configure(root)
    write_catalog(Lake(settings.curated_root))
    return settings
