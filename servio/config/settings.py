"""The settings model: every key, its default and its rules (`Settings`), and `ConfigError`,
which names the key and the expected form. Loading them is `servio.config.load`'s."""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from servio.objectstore import check_root, is_object_url
from servio.schemas import channels
from servio.schemas.catalog import DEFAULT_CATALOG_PATH, CatalogError, ItemCatalog, load_catalog
from servio.schemas.channels import CHANNELS
from servio.schemas.snapshot_tables import DEFAULT_HORIZON_DAYS
from servio.schemas.sources import Curation

DEFAULT_CONFIG_FILE = "servio.toml"
ENV_PREFIX = "SERVIO_"


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key and the expected form."""


# Numbers are strict (`true` is not 1) and finite (NaN and ±inf are refused).
NUMBERS = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class ChannelRate(BaseModel):
    """A `cost_to_serve` entry as configured: checked, then handed on as plain data."""

    model_config = NUMBERS
    per_contact: float = Field(ge=0, description="Cost per contact, reporting currency.")
    per_minute: float = Field(ge=0, description="Cost per handled minute, reporting currency.")

    def plain(self) -> channels.ChannelRate:
        return channels.ChannelRate(per_contact=self.per_contact, per_minute=self.per_minute)


DEFAULT_RATES: dict[str, ChannelRate] = {
    name: ChannelRate(per_contact=rate.per_contact, per_minute=rate.per_minute)
    for name, rate in channels.DEFAULT_RATES.items()
}
DEFAULT_SLA = channels.DEFAULT_SLA
NO_TARGET = "none"  # TOML has no null: `web = "none"` removes a target
DEFAULT_WEIGHTS = {
    d: 0.2 for d in ("tangibles", "reliability", "responsiveness", "assurance", "empathy")
}


def _refuse_unknown_channels(table: dict[str, Any]) -> None:
    """A per-channel table (`cost_to_serve`, `sla`) names only known channels."""
    unknown = sorted(set(table) - set(CHANNELS))
    if unknown:
        raise ValueError(f"unknown channel {unknown[0]!r}; channels are {', '.join(CHANNELS)}")


class Settings(BaseModel):
    """Every key of SPEC §2, and how the work runs; each is optional. Storage credentials are
    deliberately not settings: they come from the AWS environment, so no dump or fingerprint
    can hold them."""

    EXECUTION_KEYS: ClassVar[frozenset[str]] = frozenset(
        {
            "snapshot_buckets",
            "dask_address",
            "vacuum_retention_hours",
            "serve_ingest_runs",
            "serve_catch_up_seconds",
            "freshness_warn_hours",
            "freshness_error_hours",
        }
    )

    # hide_input: a root URL wrongly carrying credentials must not be echoed in the error.
    model_config = ConfigDict(**NUMBERS, frozen=True, hide_input_in_errors=True)

    raw_root: str = "data/raw"
    curated_root: str = "data/curated"
    source_timezone: str = "UTC"
    currency: str = "EUR"
    gross_margin_rate: float = Field(default=0.40, ge=0, le=1)
    window_days: int = Field(default=365, ge=1, le=36_500)
    service_level_band: float = Field(default=0.5, ge=0)
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    cost_to_serve: dict[str, ChannelRate] = Field(default_factory=lambda: dict(DEFAULT_RATES))
    value_horizon_days: int = Field(default=DEFAULT_HORIZON_DAYS, ge=1, le=36_500)
    annual_discount_rate: float = Field(default=0.10, ge=0, allow_inf_nan=False)
    sla: dict[str, float | None] = Field(default_factory=lambda: dict(DEFAULT_SLA))
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
    serve_ingest_runs: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Served ingest runs executing at once (the deployment's concurrency limit; "
        "more requests wait in Prefect's queue, and each run ingests every pending file).",
    )
    serve_catch_up_seconds: float = Field(
        default=30.0,
        ge=1,
        le=86_400,
        description="How often `servio serve` looks for files no run took (a crashed run's) "
        "and for a snapshot older than the ledger, and asks for a run.",
    )
    freshness_warn_hours: float = Field(
        default=26.0,
        gt=0,
        description="`servio status`: a source whose last ingest is older warns (exit 1).",
    )
    freshness_error_hours: float = Field(
        default=50.0,
        gt=0,
        description="`servio status`: a source whose last ingest is older is an error (exit 2).",
    )
    item_catalog: str = str(DEFAULT_CATALOG_PATH)

    def computed_json(self) -> str:
        """Every setting that changes what is computed, as JSON (not how the work runs: the
        EXECUTION_KEYS): what snapshot and run-results fingerprints hash."""
        return self.model_dump_json(exclude=set(self.EXECUTION_KEYS))

    @field_validator("raw_root", "curated_root")
    @classmethod
    def _local_or_object_store(cls, value: str) -> str:
        if not value.strip():
            # An empty path is the working directory: never what was meant.
            raise ValueError("a folder or s3://bucket/prefix, got an empty value")
        return check_root(value)

    @field_validator("source_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        problem = f"an IANA time zone such as 'Europe/Paris', got {value!r}"
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(problem) from exc
        # Polars converts the timestamps: a name Python knows but Polars does not
        # ('localtime', 'Factory') would fail on the first naive timestamp.
        try:
            pl.Series([0], dtype=pl.Datetime("us")).dt.replace_time_zone(value)
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"{problem} (unknown to Polars, which converts timestamps)") from exc
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
        _refuse_unknown_channels(value)
        return {**DEFAULT_RATES, **value}

    @field_validator("sla", mode="before")
    @classmethod
    def _merge_sla(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        _refuse_unknown_channels(value)
        targets = {
            name: None if isinstance(v, str) and v.strip().lower() == NO_TARGET else v
            for name, v in value.items()
        }
        return {**DEFAULT_SLA, **targets}

    @field_validator("sla")
    @classmethod
    def _finite_targets(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        for name, target in value.items():
            if target is not None and not (math.isfinite(target) and target >= 0):
                raise ValueError(
                    f"{name}: a queue target is a finite number of seconds ≥ 0 or "
                    f"{NO_TARGET!r}, got {target}"
                )
        return value

    @model_validator(mode="after")
    def _weights_match_catalog(self) -> Settings:
        dimensions = set(self.catalog.dimensions)
        if set(self.weights) != dimensions:
            raise ValueError(
                f"weights: one weight per catalog dimension ({', '.join(sorted(dimensions))}), "
                f"got {', '.join(sorted(self.weights))}"
            )
        return self

    @model_validator(mode="after")
    def _catalog_columns_are_distinct(self) -> Settings:
        """A dimension or item whose derived column is named like another column (dimension
        `service` → `service_gap`) would silently overwrite it."""
        from servio.schemas.raw import surveys_raw
        from servio.schemas.snapshot_tables import customer_quality_table
        from servio.schemas.tables import survey_responses_table

        catalog = self.catalog
        for what, names in (
            ("survey export", list(surveys_raw(catalog).names)),
            ("survey_responses", [c.name for c in survey_responses_table(catalog).columns]),
            ("customer_quality", [c.name for c in customer_quality_table(catalog).columns]),
        ):
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(
                    f"item_catalog: the {what} columns would have {repeated[0]!r} twice; "
                    "rename the dimension or item it derives from"
                )
        return self

    @model_validator(mode="after")
    def _roots_apart(self) -> Settings:
        """The curated root inside the raw root would be discovered as exports; the raw root
        inside the curated root would be published over."""
        raw, curated = _comparable(self.raw_root), _comparable(self.curated_root)
        if raw == curated or raw in curated.parents or curated in raw.parents:
            raise ValueError(
                f"raw_root ({self.raw_root}) and curated_root ({self.curated_root}) must be "
                "apart: neither may be, or be inside, the other"
            )
        return self

    @property
    def catalog(self) -> ItemCatalog:
        return _catalog(self.item_catalog)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.source_timezone)

    @property
    def rates(self) -> dict[str, channels.ChannelRate]:
        """`cost_to_serve` as the plain data transforms take."""
        return {name: rate.plain() for name, rate in self.cost_to_serve.items()}

    def curation(self) -> Curation:
        """What curated rows depend on (transforms take this, never the settings)."""
        return Curation(
            currency=self.currency,
            gross_margin_rate=self.gross_margin_rate,
            rates=self.rates,
            catalog=self.catalog,
            weights=dict(self.weights),
        )


def _comparable(root: str) -> PurePosixPath:
    """A root as an absolute path for comparing roots: local ones resolved, `s3://b/p` as
    `/s3:/b/p`."""
    if "://" in root:
        scheme, rest = root.split("://", 1)
        return PurePosixPath("/", scheme + ":", *[p for p in rest.split("/") if p])
    return PurePosixPath(Path(root).expanduser().resolve().as_posix())


def check_raw_root(settings: Settings) -> None:
    """The raw folder must exist before a run: a missing one (a typo, an unmounted share)
    would otherwise end as "0 files" and exit 0. Checked before any data is touched."""
    if is_object_url(settings.raw_root):
        return  # discovery names a missing bucket
    raw = Path(settings.raw_root)
    if not raw.is_dir():
        what = "is not a folder" if raw.exists() else "does not exist"
        raise ConfigError(f"raw_root: {settings.raw_root} {what} (the landing zone to ingest)")
    if not os.access(raw, os.R_OK | os.X_OK):
        raise ConfigError(f"raw_root: {settings.raw_root} cannot be listed (permission denied)")


_CATALOGS: dict[str, ItemCatalog] = {}


def _catalog(path: str) -> ItemCatalog:
    if path not in _CATALOGS:
        try:
            _CATALOGS[path] = load_catalog(Path(path))
        except (OSError, CatalogError) as exc:
            raise ValueError(f"item_catalog: {exc}") from exc
    return _CATALOGS[path]
