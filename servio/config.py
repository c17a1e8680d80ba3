"""Typed configuration, loaded once: `servio.toml` (or `--config`), then `SERVIO_<KEY>` env vars.

A bad configuration raises `ConfigError` naming the key and the expected form, before any
data is touched (SPEC §2).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.catalog import DEFAULT_CATALOG_PATH, CatalogError, ItemCatalog, load_catalog
from schemas.tables import CHANNELS
from servio.objectstore import check_root

DEFAULT_CONFIG_FILE = "servio.toml"
ENV_PREFIX = "SERVIO_"


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key and the expected form."""


class ChannelRate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_contact: float = Field(ge=0, description="Cost per contact, reporting currency.")
    per_minute: float = Field(ge=0, description="Cost per handled minute, reporting currency.")


DEFAULT_RATES: dict[str, ChannelRate] = {
    "phone": ChannelRate(per_contact=0.50, per_minute=0.90),
    "chat": ChannelRate(per_contact=0.30, per_minute=0.60),
    "email": ChannelRate(per_contact=0.40, per_minute=0.50),
    "visit": ChannelRate(per_contact=2.00, per_minute=1.20),
    "web": ChannelRate(per_contact=0.05, per_minute=0.00),
}
DEFAULT_WEIGHTS = {
    d: 0.2 for d in ("tangibles", "reliability", "responsiveness", "assurance", "empathy")
}


class Settings(BaseModel):
    """Every key of SPEC §2, and how the work runs; each is optional. Storage credentials are
    deliberately not settings: they come from the AWS environment, so no dump or fingerprint
    can hold them."""

    EXECUTION_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"snapshot_buckets", "dask_address", "vacuum_retention_hours"}
    )

    # hide_input: a root URL wrongly carrying credentials must not be echoed in the error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    raw_root: str = "data/raw"
    curated_root: str = "data/curated"
    source_timezone: str = "UTC"
    currency: str = "EUR"
    gross_margin_rate: float = Field(default=0.40, ge=0, le=1)
    window_days: int = Field(default=365, ge=1, le=36_500)
    service_level_band: float = Field(default=0.5, ge=0)
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    cost_to_serve: dict[str, ChannelRate] = Field(default_factory=lambda: dict(DEFAULT_RATES))
    # How the work runs, not what it computes (left out of snapshot fingerprints):
    snapshot_buckets: int = Field(
        default=1,
        ge=1,
        le=4096,
        description="Customer-hash buckets a snapshot is computed in, each an independent task.",
    )
    dask_address: str | None = Field(
        default=None,
        description="Run flow tasks on this Dask scheduler (tcp://host:8786), or 'local' for a "
        "temporary local cluster; unset: threads in the flow's process.",
    )
    vacuum_retention_hours: int = Field(
        default=168,
        ge=1,
        le=87_600,
        description="Superseded data files are deleted (vacuum) once older than this; longer "
        "than the longest BI query and the time travel readers need (Delta's default: 7 days).",
    )
    item_catalog: str = str(DEFAULT_CATALOG_PATH)

    @field_validator("raw_root", "curated_root")
    @classmethod
    def _local_or_object_store(cls, value: str) -> str:
        return check_root(value)

    @field_validator("source_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"an IANA time zone such as 'Europe/Paris', got {value!r}") from exc
        return value

    @field_validator("dask_address")
    @classmethod
    def _dask_scheme(cls, value: str | None) -> str | None:
        if value in (None, "", "local"):
            return value or None
        if "://" not in value:
            raise ValueError(
                f"expected 'local' or a scheduler address like tcp://host:8786, got {value!r}"
            )
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        code = value.strip().upper()
        if len(code) != 3 or not code.isalpha():
            raise ValueError(f"a 3-letter ISO 4217 code such as 'EUR', got {value!r}")
        return code

    @field_validator("weights")
    @classmethod
    def _weights_sum_to_one(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if weight < 0:
                raise ValueError(f"weight of {name!r} must be ≥ 0, got {weight}")
        if abs(sum(value.values()) - 1.0) > 1e-9:
            raise ValueError(f"weights must sum to 1, they sum to {sum(value.values()):g}")
        return value

    @field_validator("cost_to_serve", mode="before")
    @classmethod
    def _merge_rates(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - set(CHANNELS))
        if unknown:
            raise ValueError(f"unknown channel {unknown[0]!r}; channels are {', '.join(CHANNELS)}")
        return {**DEFAULT_RATES, **value}

    @model_validator(mode="after")
    def _weights_match_catalog(self) -> Settings:
        dimensions = set(self.catalog.dimensions)
        if set(self.weights) != dimensions:
            raise ValueError(
                f"weights: one weight per catalog dimension ({', '.join(sorted(dimensions))}), "
                f"got {', '.join(sorted(self.weights))}"
            )
        return self

    @property
    def catalog(self) -> ItemCatalog:
        return _catalog(self.item_catalog)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.source_timezone)


_CATALOGS: dict[str, ItemCatalog] = {}


def _catalog(path: str) -> ItemCatalog:
    if path not in _CATALOGS:
        try:
            _CATALOGS[path] = load_catalog(Path(path))
        except (OSError, CatalogError) as exc:
            raise ValueError(f"item_catalog: {exc}") from exc
    return _CATALOGS[path]


def env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`SERVIO_<KEY>` for each top-level key; tables (weights, cost_to_serve) as JSON."""
    overrides: dict[str, Any] = {}
    for name, spec in Settings.model_fields.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        if spec.annotation is not None and str(spec.annotation).startswith("dict"):
            try:
                overrides[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{ENV_PREFIX}{name.upper()}: expected a JSON object ({exc})"
                ) from exc
        else:
            overrides[name] = raw
    return overrides


def load_settings(
    path: str | Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Read the TOML file (optional when not named explicitly), overlay the environment, check all."""
    environ = dict(os.environ) if environ is None else environ
    explicit = path is not None
    config_path = Path(path if path is not None else DEFAULT_CONFIG_FILE)
    values: dict[str, Any] = {}
    if config_path.exists():
        try:
            values = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: not valid TOML ({exc})") from exc
    elif explicit:
        raise ConfigError(f"{config_path}: configuration file not found")
    values.update(env_overrides(environ))
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(config_path, exc)) from None


def _describe(config_path: Path, exc: ValidationError) -> str:
    lines = [f"{config_path}: bad configuration"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key; known keys are {', '.join(Settings.model_fields)}"
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    return "\n".join(lines)
