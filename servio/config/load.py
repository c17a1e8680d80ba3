"""Loading the settings: `servio.toml` (or `--config`), then `SERVIO_<KEY>` env vars, then
command-line options — the file and the environment read by pydantic-settings' sources, the
checks and their messages `Settings`'."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource, TomlConfigSettingsSource
from pydantic_settings.exceptions import SettingsError

from servio.config.settings import DEFAULT_CONFIG_FILE, ENV_PREFIX, ConfigError, Settings

_INTEGER_TEXT = re.compile(r"[+-]?\d+")
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _env_number(raw: str) -> Any:
    """A number written in decimal (`30`, `.4`, `1e3`), else the text itself, which the
    model refuses naming the key: `nan`, `inf`, `true`, `1_000` are not numbers here."""
    text = raw.strip()
    if _INTEGER_TEXT.fullmatch(text):
        return int(text)
    if _DECIMAL_TEXT.fullmatch(text):
        return float(text)
    return raw


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source for `SERVIO_<KEY>`, held to the file's rules:
    numbers as decimal text only (`true`, `nan`, `1_000` reach the model as text, which it
    refuses naming the key), tables (weights, cost_to_serve, sla) as JSON, read from the
    given environment."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(cast(Any, Settings), env_prefix=ENV_PREFIX, case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Upper-case SERVIO_ names only, as documented; matched to the keys in lower case.
        return {k.lower(): v for k, v in self._environ.items() if k.startswith(ENV_PREFIX)}

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        if value is not None and field.annotation in (int, float):
            return _env_number(value)
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:  # a table that is not JSON
            raise ConfigError(
                f"{ENV_PREFIX}{field_name.upper()}: expected a JSON object ({exc})"
            ) from exc


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`SERVIO_<KEY>` for each top-level key (pydantic-settings' environment source)."""
    try:
        return dict(_Environment(environ)())
    except SettingsError as exc:
        if isinstance(exc.__cause__, ConfigError):
            raise exc.__cause__ from None
        raise ConfigError(str(exc)) from None


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Read the TOML file (optional when not named explicitly), overlay the environment, then
    `overrides` (command-line options: they win), and check all. The file and the environment
    are read by pydantic-settings' sources; the checks and their messages are `Settings`'."""
    environ = os.environ if environ is None else environ
    explicit = path is not None
    config_path = Path(path if path is not None else DEFAULT_CONFIG_FILE)
    values: dict[str, Any] = {}
    if config_path.exists():
        if not config_path.is_file():  # the source would skip it silently
            raise ConfigError(f"{config_path}: cannot be read (not a file)")
        try:
            values = dict(TomlConfigSettingsSource(cast(Any, Settings), toml_file=config_path)())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: not valid TOML ({exc})") from exc
        except OSError as exc:  # a folder, no permission
            raise ConfigError(f"{config_path}: cannot be read ({exc.strerror})") from None
    elif explicit:
        raise ConfigError(f"{config_path}: configuration file not found")
    values.update(env_overrides(environ))
    values.update(overrides or {})
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
