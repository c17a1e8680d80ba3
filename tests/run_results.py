"""The run-results documents (`_servio/runs/<run_id>.json`, `--json`) as tests read them:
validated against the committed JSON Schema, the way a scheduler's wrapper would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "schemas" / "run_results.schema.json").read_text(encoding="utf-8"))


def valid(doc: dict[str, Any]) -> dict[str, Any]:
    jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(doc)
    return doc


def written(curated: Path) -> list[Path]:
    """The documents written to the lake, in run-id (start time) order."""
    folder = curated / "_servio" / "runs"
    return sorted(folder.glob("*.json")) if folder.exists() else []


def read(path: Path) -> dict[str, Any]:
    return valid(json.loads(path.read_text(encoding="utf-8")))
