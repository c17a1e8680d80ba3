"""Configuration: TOML file, SERVIO_<KEY> overrides, and errors that name the key (SPEC §2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servio.config import ConfigError, load_settings


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(environ={})
    assert settings.currency == "EUR"
    assert settings.window_days == 365
    assert settings.cost_to_serve["visit"].per_contact == 2.00
    assert sum(settings.weights.values()) == pytest.approx(1.0)


def test_file_values_and_partial_rate_tables_merge_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "servio.toml"
    path.write_text(
        'currency = "usd"\n[cost_to_serve]\nphone = { per_contact = 1.0, per_minute = 2.0 }\n'
    )
    settings = load_settings(path, environ={})
    assert settings.currency == "USD"
    assert settings.cost_to_serve["phone"].per_minute == 2.0
    assert settings.cost_to_serve["chat"].per_minute == 0.60


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "servio.toml"
    path.write_text("window_days = 90\n")
    settings = load_settings(
        path,
        environ={
            "SERVIO_WINDOW_DAYS": "30",
            "SERVIO_WEIGHTS": '{"tangibles": 0.1, "reliability": 0.3, '
            '"responsiveness": 0.2, "assurance": 0.2, "empathy": 0.2}',
        },
    )
    assert settings.window_days == 30
    assert settings.weights["reliability"] == 0.3


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ("gross_margin_rate = 1.5", "gross_margin_rate"),
        ("window_days = 0", "window_days"),
        ("currency = 'EURO'", "currency"),
        ("source_timezone = 'Mars/Olympus'", "source_timezone"),
        ("[cost_to_serve]\nfax = { per_contact = 1, per_minute = 1 }", "fax"),
        (
            "[cost_to_serve]\nphone = { per_contact = -1, per_minute = 1 }",
            "cost_to_serve.phone.per_contact",
        ),
        (
            "[weights]\ntangibles = 0.5\nreliability = 0.2\nresponsiveness = 0.2\nassurance = 0.2\nempathy = 0.2",
            "sum to 1",
        ),
        ("[weights]\ntangibles = 1.0", "one weight per catalog dimension"),
        ("colour = 'blue'", "colour"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, toml: str, names: str) -> None:
    path = tmp_path / "servio.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_settings(path, environ={})


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "servio.toml"
    path.write_text("window_days = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, environ={})
