"""A small real lake for reader tests: generated exports, ingested and snapshotted with the
pipeline steps `servio run` uses, without Prefect (faster; no server needed)."""

from __future__ import annotations

from pathlib import Path

from servio.config import Settings, load_settings
from servio.generate import GenerateOptions, generate
from servio.pipeline import run_steps
from servio.storage import Lake
from servio.validation.gx import GxValidator


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
    run_steps(settings, lake, run_id, GxValidator())
    return settings, lake
