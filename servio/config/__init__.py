"""Typed configuration, loaded once: `servio.toml` (or `--config`), then `SERVIO_<KEY>` env vars,
then command-line options — the file and the environment read by pydantic-settings' sources.

A bad configuration raises `ConfigError` naming the key and the expected form, before any
data is touched (SPEC §2). The model and its rules: `settings.py`; reading them: `load.py`.
"""

from servio.config.load import env_overrides, load_settings
from servio.config.settings import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_SLA,
    ENV_PREFIX,
    ChannelRate,
    ConfigError,
    Settings,
    check_raw_root,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_SLA",
    "ENV_PREFIX",
    "ChannelRate",
    "ConfigError",
    "Settings",
    "check_raw_root",
    "env_overrides",
    "load_settings",
]
