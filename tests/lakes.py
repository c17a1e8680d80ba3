"""A small real lake for reader tests: generated exports, ingested and snapshotted with the
sequence `servio run` uses, without Prefect (faster; no server needed)."""

from __future__ import annotations

from pathlib import Path

from servio.config import Settings, load_settings
from servio.lake.lake import Lake
from servio.tools.generate import GenerateOptions, generate
from tests.runs import run


def build_lake(root: Path, run_id: str, days: int = 60) -> tuple[Settings, Lake]:
    """Generate a small landing zone under `root` and run ingest + snapshot as `servio run` does."""
    generate(root / "raw", GenerateOptions(customers=300, days=days, seed=3))
    config = root / "servio.toml"
    config.write_text(
        f'raw_root = "{(root / "raw").as_posix()}"\n'
        f'curated_root = "{(root / "curated").as_posix()}"\n'
    )
    settings = load_settings(config)
    lake = Lake(settings.curated_root)
    run(settings, run_id=run_id)
    return settings, lake
