"""The SPEC §6 settings: value_horizon_days, annual_discount_rate and the [sla] queue targets,
checked like every other setting (a bad value stops the run, the message names the key)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servio.config import DEFAULT_SLA, ConfigError, Settings, load_settings


def load(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "servio.toml"
    path.write_text(toml, encoding="utf-8")
    return load_settings(path, environ=environ or {})


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.value_horizon_days == 365
    assert settings.annual_discount_rate == 0.10
    assert settings.sla == {"phone": 60, "chat": 30, "email": 86_400, "visit": 600, "web": None}


def test_sla_targets_merge_with_the_defaults_and_none_removes_one(tmp_path: Path) -> None:
    settings = load(tmp_path, '[sla]\nweb = 120\nemail = "none"\n')
    assert settings.sla == {**DEFAULT_SLA, "web": 120.0, "email": None}


def test_environment_sets_the_value_settings(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "value_horizon_days = 90\n",
        {
            "SERVIO_VALUE_HORIZON_DAYS": "180",
            "SERVIO_ANNUAL_DISCOUNT_RATE": "0.05",
            "SERVIO_SLA": '{"chat": 45, "phone": null}',
        },
    )
    assert (settings.value_horizon_days, settings.annual_discount_rate) == (180, 0.05)
    assert settings.sla["chat"] == 45 and settings.sla["phone"] is None


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ("value_horizon_days = 0", "value_horizon_days"),
        ("value_horizon_days = 1.5", "value_horizon_days"),
        ('value_horizon_days = "a year"', "value_horizon_days"),
        ("annual_discount_rate = -0.01", "annual_discount_rate"),
        ("annual_discount_rate = inf", "annual_discount_rate"),
        ("annual_discount_rate = nan", "annual_discount_rate"),
        ("[sla]\nfax = 10", "unknown channel 'fax'"),
        ("[sla]\nphone = -1", "phone"),
        ("[sla]\nchat = inf", "chat"),
        ('[sla]\nvisit = "soon"', "sla.visit"),
        ('sla = "fast"', "sla"),
    ],
)
def test_bad_value_settings_name_the_key(tmp_path: Path, toml: str, names: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, toml)
    assert names in str(error.value)


@given(target=st.floats(allow_nan=True, allow_infinity=True))
@settings(max_examples=100, deadline=None)
def test_a_queue_target_is_accepted_exactly_when_finite_and_not_negative(
    tmp_path_factory: pytest.TempPathFactory, target: float
) -> None:
    tmp_path = tmp_path_factory.mktemp("sla")
    environ = {"SERVIO_SLA": f'{{"phone": {target!r}}}'.replace("inf", "Infinity")}
    environ["SERVIO_SLA"] = environ["SERVIO_SLA"].replace("nan", "NaN")
    if math.isfinite(target) and target >= 0:
        assert load(tmp_path, "", environ).sla["phone"] == target
    else:
        with pytest.raises(ConfigError, match="phone"):
            load(tmp_path, "", environ)
