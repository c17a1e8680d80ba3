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


# ---------------------------------------------------------------------------------------
# hostile settings (issue #16, class 8): refused before any data is touched

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from servio.config import check_raw_root  # noqa: E402

NUMERIC_KEYS = [
    ("gross_margin_rate = {}", "gross_margin_rate"),
    ("window_days = {}", "window_days"),
    ("service_level_band = {}", "service_level_band"),
    ("snapshot_buckets = {}", "snapshot_buckets"),
    (
        "[weights]\ntangibles = {}\nreliability = 0.2\nresponsiveness = 0.2\nassurance = 0.2\n"
        "empathy = 0.2",
        "weights.tangibles",
    ),
    ("[cost_to_serve]\nphone = {{ per_contact = {}, per_minute = 1 }}", "per_contact"),
]
NOT_A_NUMBER = ["nan", "inf", "-inf", "+inf", "true", "false", "'0.4'", "[1]"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NUMERIC_KEYS), st.sampled_from(NOT_A_NUMBER))
def test_nan_infinity_booleans_and_text_are_not_numbers(key: tuple[str, str], value: str) -> None:
    import tempfile

    template, names = key
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "servio.toml"
        path.write_text(template.format(value) + "\n")
        with pytest.raises(ConfigError, match=names):
            load_settings(path, environ={})


@pytest.mark.parametrize("value", ["nan", "inf", "true", "Infinity", "1e999", "0x10", "1_000"])
@pytest.mark.parametrize("key", ["GROSS_MARGIN_RATE", "WINDOW_DAYS", "SERVICE_LEVEL_BAND"])
def test_the_environment_is_held_to_the_same_numbers(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key.lower()):
        load_settings(environ={f"SERVIO_{key}": value})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("GROSS_MARGIN_RATE", ".4", 0.4),
        ("GROSS_MARGIN_RATE", "+0.25", 0.25),
        ("SERVICE_LEVEL_BAND", "1e-1", 0.1),
        ("SERVICE_LEVEL_BAND", "2", 2.0),
        ("WINDOW_DAYS", " 30 ", 30),
    ],
)
def test_numbers_in_the_environment_are_read_as_decimal_text(
    key: str, value: str, expected: float
) -> None:
    settings = load_settings(environ={f"SERVIO_{key}": value})
    assert getattr(settings, key.lower()) == expected


def test_a_weight_of_nan_in_the_environment_is_refused() -> None:
    weights = '{"tangibles": NaN, "reliability": 0.25, "responsiveness": 0.25, "assurance": 0.25, "empathy": 0.25}'
    with pytest.raises(ConfigError, match=r"weights\.tangibles"):
        load_settings(environ={"SERVIO_WEIGHTS": weights})


def test_time_zones_python_knows_but_polars_does_not_are_refused() -> None:
    import zoneinfo

    for name in ("localtime", "Factory", "posixrules"):
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue  # this machine's tz database lacks it: nothing to prove here
        with pytest.raises(ConfigError, match=r"source_timezone.*Polars"):
            load_settings(environ={"SERVIO_SOURCE_TIMEZONE": name})


@pytest.mark.parametrize(
    ("dimension", "item", "column"),
    [
        ("service", "srv1", "service_gap"),
        ("technical", "tech1", "technical_gap"),
        ("functional", "fun1", "functional_gap"),
        ("reliability", "reliability_gap", "perc_reliability_gap"),
    ],
)
def test_catalog_names_whose_columns_collide_are_refused(
    tmp_path: Path, dimension: str, item: str, column: str
) -> None:
    catalog = tmp_path / "catalog.csv"
    rows = ["item,dimension,side", "tan1,tangibles,functional", f"{item},{dimension},technical"]
    if column.startswith("perc_"):  # an item whose answer column is another's derived one
        rows.append("gap,perc_reliability,technical")
    catalog.write_text("\n".join(rows) + "\n")
    dimensions = list(dict.fromkeys(r.split(",")[1] for r in rows[1:]))
    weights = ", ".join(f'"{d}": {1 / len(dimensions)}' for d in dimensions)
    with pytest.raises(ConfigError, match=f"item_catalog: .* {column!r} twice"):
        load_settings(
            environ={"SERVIO_ITEM_CATALOG": str(catalog), "SERVIO_WEIGHTS": "{" + weights + "}"}
        )


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["inside", "equal", "outside"]),
    st.sampled_from(["", "/", "/./"]),
    st.booleans(),
)
def test_raw_and_curated_roots_must_be_apart(where: str, suffix: str, swap: bool) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        inner = {"inside": base / "lake" / "curated", "equal": base / "lake"}.get(where)
        raw, curated = str(base / "lake") + suffix, str(inner or base / "curated")
        if swap:
            raw, curated = curated, raw
        environ = {"SERVIO_RAW_ROOT": raw, "SERVIO_CURATED_ROOT": curated}
        if where == "outside":
            load_settings(environ=environ)
        else:
            with pytest.raises(ConfigError, match="must be apart"):
                load_settings(environ=environ)


def test_object_store_roots_must_be_apart_too() -> None:
    with pytest.raises(ConfigError, match="must be apart"):
        load_settings(
            environ={"SERVIO_RAW_ROOT": "s3://b/lake", "SERVIO_CURATED_ROOT": "s3://b/lake/cur"}
        )
    load_settings(environ={"SERVIO_RAW_ROOT": "s3://b/raw", "SERVIO_CURATED_ROOT": "s3://b/r"})


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_root_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="raw_root: a folder or s3"):
        load_settings(environ={"SERVIO_RAW_ROOT": value})


def test_a_missing_raw_folder_stops_servio_run_before_any_data_is_touched(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from servio.cli import app

    config = tmp_path / "servio.toml"
    config.write_text(
        f'raw_root = "{tmp_path / "typo"}"\ncurated_root = "{tmp_path / "curated"}"\n'
    )
    with pytest.raises(ConfigError, match="does not exist"):
        check_raw_root(load_settings(config, environ={}))
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "raw_root" in result.output and "does not exist" in result.output
    assert not (tmp_path / "curated").exists()


HOSTILE_SETTINGS = [
    ("gross_margin_rate = nan", {}),
    ("window_days = true", {}),
    ("[weights]\ntangibles = inf", {}),
    ("source_timezone = 'localtime'", {}),
    ("source_timezone = '../../etc/passwd'", {}),
    ("raw_root = ''", {}),
    ("curated_root = '{raw}/curated'", {}),
    ("raw_root = '{base}/missing'", {}),
    ("item_catalog = '{base}'", {}),
    ("item_catalog = '{base}/binary.csv'", {}),
    ("cost_to_serve = [1, 2]", {}),
    ("currency = 5", {}),
    ("dask_address = 'nonsense'", {}),
    ("clé = 1", {}),
    ("", {"SERVIO_WEIGHTS": "{nope"}),
    ("", {"SERVIO_SNAPSHOT_BUCKETS": "1e9"}),
    ("", {"SERVIO_GROSS_MARGIN_RATE": "NaN"}),
    ("", {"SERVIO_CURATED_ROOT": "s3://user:secret@bucket/x"}),
    ("\xff\xfe not text", {}),
    ("<folder>", {}),
]


@pytest.mark.parametrize(("toml", "environ"), HOSTILE_SETTINGS)
def test_servio_run_stops_on_any_hostile_setting_with_exit_2_and_no_traceback(
    toml: str, environ: dict[str, str], tmp_path: Path
) -> None:
    """Settings are refused before any data is touched: exit 2, a message, no traceback, no
    curated folder created, no secret echoed."""
    from typer.testing import CliRunner

    from servio.cli import app

    raw = tmp_path / "raw"
    (raw / "interactions").mkdir(parents=True)
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x01")
    config = tmp_path / "servio.toml"
    if toml == "<folder>":
        config.mkdir()
    else:
        head = toml.format(base=tmp_path, raw=raw)
        roots = "" if "raw_root" in head else f"raw_root = '{raw}'\n"
        roots += "" if "curated_root" in head else f"curated_root = '{tmp_path / 'curated'}'\n"
        # Top-level keys first: a [table] header takes every line after it.
        encoding = "latin-1" if head.startswith("\xff") else "utf-8"
        config.write_bytes(roots.encode() + head.encode(encoding) + b"\n")
    result = CliRunner().invoke(app, ["run", "--config", str(config)], env=environ)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert "configuration error" in result.output
    assert "secret" not in result.output
    assert not (tmp_path / "curated").exists()
