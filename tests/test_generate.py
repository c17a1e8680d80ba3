"""The seeded sample-data generator: deterministic bytes, SPEC §1 compliance when clean, exact
ground truth when messy, and the business shapes the demo and the metric checks rely on.

The files are read back with plain Polars and checked against the SPEC rules written out here,
independently of servio's own readers and validators.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servio.key_drivers import relative_weights
from servio.schemas.catalog import load_catalog
from servio.schemas.channels import CHANNELS, DEFAULT_RATES, DEFAULT_SLA
from servio.tools.generate import FORMATS, MANIFEST_NAME, GenerateOptions, GenerateReport, generate

CATALOG = load_catalog()
END = date(2026, 11, 26)
BOOLEANS = dict.fromkeys(("true", "1", "yes", "y"), True) | dict.fromkeys(
    ("false", "0", "no", "n"), False
)
SMALL = GenerateOptions(customers=300, days=60, seed=7)


# ---------------------------------------------------------------------------------------------
# Reading a generated landing zone back, as text, with plain Polars


def read_export(path: Path) -> pl.DataFrame:
    """One export as String columns with trimmed, lower-cased names, plus `_file`."""
    name = path.name
    if name.endswith(".parquet"):
        frame = pl.read_parquet(path)
        naive = [
            c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone is None
        ]
        frame = frame.with_columns(pl.col(naive).dt.replace_time_zone("UTC"))  # naive = source zone
        frame = frame.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    elif ".csv" in name:
        frame = pl.read_csv(path, infer_schema=False)
    else:
        frame = pl.read_ndjson(path)
    frame = frame.with_columns(pl.all().cast(pl.String)).rename(lambda c: c.strip().lower())
    return frame.with_columns(_file=pl.lit(path.relative_to(path.parent.parent).as_posix()))


def read_source(zone: Path, source: str) -> pl.DataFrame:
    """Every file of a source in path order (servio's ingestion order), `_seq` numbering them."""
    files = sorted((zone / source).iterdir())
    frames = [read_export(p).with_columns(_seq=pl.lit(i)) for i, p in enumerate(files)]
    return pl.concat(frames, how="diagonal_relaxed")


def text(column: str) -> pl.Expr:
    trimmed = pl.col(column).str.strip_chars()
    return pl.when(trimmed.str.len_chars() > 0).then(trimmed)


def timestamp(column: str) -> pl.Expr:
    """ISO-8601 with Z, an offset, or naive (= UTC, servio's default source zone) → UTC."""
    raw = text(column)
    with_offset = (
        pl.when(raw.str.ends_with("Z"))
        .then(raw.str.replace("Z$", "+00:00"))
        .when(raw.str.contains(r"[+-]\d{2}:\d{2}$"))
        .then(raw)
        .otherwise(raw + "+00:00")
    )
    return with_offset.str.to_datetime("%Y-%m-%dT%H:%M:%S%z", time_zone="UTC", strict=False)


def number(column: str) -> pl.Expr:
    return text(column).cast(pl.Float64, strict=False)


def optional_in_range(column: str, low: float, high: float) -> pl.Expr:
    value = number(column)
    return text(column).is_null() | (value.is_not_null() & value.is_between(low, high))


def identifier(column: str) -> pl.Expr:
    return text(column).is_not_null() & (text(column).str.len_chars() <= 64)


def in_time(column: str) -> pl.Expr:
    ts = timestamp(column)
    floor = datetime(2000, 1, 1, tzinfo=UTC)
    ceiling = datetime.combine(END + timedelta(days=2), datetime.min.time(), UTC)
    return ts.is_not_null() & (ts >= floor) & (ts <= ceiling)


def interaction_is_valid() -> pl.Expr:
    """Every SPEC §1.3 rule for one row."""
    return (
        identifier("interaction_id")
        & identifier("customer_id")
        & text("channel").str.to_lowercase().is_in(CHANNELS).fill_null(False)
        & in_time("started_at")
        & number("handle_seconds").is_between(0, 86_400).fill_null(False)
        & optional_in_range("queue_seconds", 0, 604_800)
        & text("resolved").str.to_lowercase().is_in(list(BOOLEANS)).fill_null(False)
        & optional_in_range("revenue", -1e9, 1e9)
        & optional_in_range("margin", -1e9, 1e9)
        & (text("currency").is_null() | (text("currency") == "EUR"))
        & (text("updated_at").is_null() | timestamp("updated_at").is_not_null())
    )


def survey_is_valid() -> pl.Expr:
    """Every SPEC §1.4 rule for one row."""
    scores = [optional_in_range(c, 1, 7) & _whole(c) for c in CATALOG.answer_columns]
    scores += [
        optional_in_range("nps", 0, 10) & _whole("nps"),
        optional_in_range("csat", 1, 5) & _whole("csat"),
        optional_in_range("ces", 1, 7) & _whole("ces"),
    ]
    answered = pl.any_horizontal(
        *[text(i.perception_column).is_not_null() for i in CATALOG.items],
        text("nps").is_not_null(),
        text("csat").is_not_null(),
        text("ces").is_not_null(),
    )
    return (
        identifier("response_id")
        & identifier("customer_id")
        & in_time("submitted_at")
        & pl.all_horizontal(scores)
        & answered
    )


def _whole(column: str) -> pl.Expr:
    return text(column).is_null() | (number(column) == number(column).floor()).fill_null(False)


def latest_interactions(zone: Path) -> pl.DataFrame:
    """Valid rows, typed, latest version per interaction_id (later file wins ties)."""
    raw = read_source(zone, "interactions").filter(interaction_is_valid())
    typed = raw.select(
        text("interaction_id").alias("interaction_id"),
        text("customer_id").alias("customer_id"),
        text("channel").str.to_lowercase().alias("channel"),
        timestamp("started_at").alias("started_at"),
        number("handle_seconds").alias("handle_seconds"),
        number("queue_seconds").alias("queue_seconds"),
        text("resolved")
        .str.to_lowercase()
        .replace_strict(BOOLEANS, return_dtype=pl.Boolean)
        .alias("resolved"),
        text("reason").str.to_lowercase().alias("reason"),
        number("revenue").fill_null(0.0).alias("revenue"),
        number("margin").alias("margin"),
        pl.coalesce(timestamp("updated_at"), timestamp("started_at")).alias("version_at"),
        "_seq",
    )
    return (
        typed.sort("version_at", "_seq")
        .unique("interaction_id", keep="last")
        .sort("interaction_id")
    )


def fcr_rate(interactions: pl.DataFrame) -> float:
    """SPEC §4.2: resolved, and no later contact of the customer with the same reason within 7 days."""
    contacts = interactions.select(
        "interaction_id", "customer_id", "started_at", "reason", "resolved"
    )
    later = contacts.join(contacts, on=["customer_id", "reason"], suffix="_next").filter(
        (pl.col("started_at_next") > pl.col("started_at"))
        & (pl.col("started_at_next") <= pl.col("started_at") + timedelta(days=7))
    )
    repeated = later.select("interaction_id").unique()
    first_time = contacts.join(repeated, on="interaction_id", how="anti").filter("resolved")
    return first_time.height / contacts.height


def sha256_of_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------
# Zones shared by the tests (generation takes well under a second at these sizes)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerateReport]:
    zone = tmp_path_factory.mktemp("clean")
    return zone, generate(zone, GenerateOptions(customers=3_000, days=120, seed=11, messiness=0.0))


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerateReport]:
    zone = tmp_path_factory.mktemp("messy")
    return zone, generate(zone, GenerateOptions(customers=1_500, days=90, seed=3, messiness=0.05))


@pytest.fixture(scope="module")
def latest(clean: tuple[Path, GenerateReport]) -> pl.DataFrame:
    """Latest valid version of each interaction of the clean zone."""
    return latest_interactions(clean[0])


@pytest.fixture(scope="module")
def outcomes(clean: tuple[Path, GenerateReport], latest: pl.DataFrame) -> pl.DataFrame:
    """Per survey response: mean perception per dimension, joined to its contact."""
    surveys = read_source(clean[0], "surveys").filter(survey_is_valid())
    items = {
        d: [number(i.perception_column) for i in CATALOG.items_of(d)] for d in CATALOG.dimensions
    }
    scored = surveys.select(
        text("interaction_id").alias("interaction_id"),
        *[pl.mean_horizontal(columns).alias(d) for d, columns in items.items()],
    )
    return scored.join(latest, on="interaction_id")


# ---------------------------------------------------------------------------------------------
# Determinism and layout


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    for name, options in (("a", SMALL), ("b", SMALL), ("c", replace(SMALL, seed=8))):
        generate(tmp_path / name, options)
    first, second, other = (sha256_of_tree(tmp_path / name) for name in "abc")

    assert first == second
    assert MANIFEST_NAME in first
    data_files = [name for name in first if name != MANIFEST_NAME]
    assert all(first[name] != other.get(name) for name in data_files)


def test_every_format_is_written_for_both_sources(tmp_path: Path) -> None:
    report = generate(tmp_path, GenerateOptions(customers=200, days=30, formats=FORMATS))

    for source in ("interactions", "surveys"):
        written = {p.name.split(".", 1)[1] for p in report.files if p.parent.name == source}
        assert written == set(FORMATS), source
    assert report.files[-1] == tmp_path / MANIFEST_NAME


def test_gzip_header_carries_no_modification_time(tmp_path: Path) -> None:
    report = generate(tmp_path, SMALL)

    gz = next(p for p in report.files if p.name.endswith(".gz"))
    assert gz.read_bytes()[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime


def test_rerunning_the_same_options_rewrites_the_same_bytes(tmp_path: Path) -> None:
    generate(tmp_path, SMALL)
    before = sha256_of_tree(tmp_path)

    generate(tmp_path, SMALL)

    assert sha256_of_tree(tmp_path) == before


def test_refuses_to_mix_with_other_exports(tmp_path: Path) -> None:
    generate(tmp_path, SMALL)

    with pytest.raises(FileExistsError, match="generate into an empty directory"):
        generate(tmp_path, replace(SMALL, seed=99))


def test_refuses_a_landing_zone_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "surveys").mkdir()
    (tmp_path / "surveys" / "export.csv").write_text("response_id\n", encoding="utf-8")

    with pytest.raises(FileExistsError, match=r"surveys/export\.csv"):
        generate(tmp_path, SMALL)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (GenerateOptions(formats=("csv", "xlsx")), "unknown format 'xlsx'"),
        (GenerateOptions(messiness=0.9), "messiness must be between 0 and 0.5"),
        (GenerateOptions(customers=0), "customers must be ≥ 1"),
    ],
)
def test_bad_options_are_named(tmp_path: Path, options: GenerateOptions, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, options)


# ---------------------------------------------------------------------------------------------
# Clean data obeys SPEC §1; the manifest says what is in the files


def test_clean_zone_breaks_no_rule(clean: tuple[Path, GenerateReport]) -> None:
    zone, report = clean
    interactions = read_source(zone, "interactions")
    surveys = read_source(zone, "surveys")

    assert report.bad_interaction_rows == report.bad_survey_rows == 0
    assert interactions.filter(~interaction_is_valid()).height == 0
    assert surveys.filter(~survey_is_valid()).height == 0
    assert interactions.height == report.interaction_rows
    assert surveys.height == report.survey_rows


def test_clean_manifest_matches_the_files(
    clean: tuple[Path, GenerateReport], latest: pl.DataFrame
) -> None:
    zone, report = clean
    manifest = json.loads((zone / MANIFEST_NAME).read_text(encoding="utf-8"))
    interactions = read_source(zone, "interactions")
    surveys = read_source(zone, "surveys")

    assert interactions["interaction_id"].n_unique() == report.valid_interaction_ids
    assert surveys["response_id"].n_unique() == report.valid_response_ids
    assert manifest["report"]["valid_interaction_ids"] == report.valid_interaction_ids
    assert manifest["report"]["interaction_rows"] == report.interaction_rows
    assert manifest["options"]["messiness"] == 0.0
    rows_by_file = (
        interactions.group_by("_file").len().rows() + surveys.group_by("_file").len().rows()
    )
    assert dict(rows_by_file) == {f["path"]: f["rows"] for f in manifest["files"]}
    truth = manifest["ground_truth"]
    cents = (latest["revenue"] * 100).round().cast(pl.Int64).sum()
    assert f"{cents // 100}.{cents % 100:02d}" == truth["revenue_total"]
    assert latest["customer_id"].n_unique() == truth["customers_with_valid_interactions"]


def test_messy_zone_counts_are_exact(messy: tuple[Path, GenerateReport]) -> None:
    zone, report = messy
    manifest = json.loads((zone / MANIFEST_NAME).read_text(encoding="utf-8"))
    interactions = read_source(zone, "interactions").with_columns(valid=interaction_is_valid())
    surveys = read_source(zone, "surveys").with_columns(valid=survey_is_valid())

    assert interactions.height == report.interaction_rows
    assert interactions.filter(~pl.col("valid")).height == report.bad_interaction_rows > 0
    assert interactions.filter("valid")["interaction_id"].n_unique() == report.valid_interaction_ids
    assert surveys.filter(~pl.col("valid")).height == report.bad_survey_rows > 0
    assert surveys.filter("valid")["response_id"].n_unique() == report.valid_response_ids
    # A broken row's id is nowhere else: valid ids are exactly the ids of the valid rows.
    bad_ids = interactions.filter(~pl.col("valid"))["interaction_id"].drop_nulls()
    assert not bad_ids.is_in(interactions.filter("valid")["interaction_id"].implode()).any()
    # Messiness is about the asked share of all rows, duplicates included.
    messy_rows = (
        report.bad_interaction_rows + manifest["ground_truth"]["duplicate_interaction_rows"]
    )
    assert messy_rows == pytest.approx(
        0.05 * (report.valid_interaction_ids + report.bad_interaction_rows), abs=1
    )


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    customers=st.integers(1, 120),
    days=st.integers(1, 70),
    messiness=st.sampled_from([0.0, 0.01, 0.1, 0.5]),
    formats=st.lists(st.sampled_from(FORMATS), min_size=1, max_size=4, unique=True),
)
def test_ground_truth_holds_for_any_options(
    seed: int, customers: int, days: int, messiness: float, formats: list[str]
) -> None:
    options = GenerateOptions(
        customers=customers, days=days, seed=seed, messiness=messiness, formats=tuple(formats)
    )
    with tempfile.TemporaryDirectory() as folder:
        zone = Path(folder)
        report = generate(zone, options)
        written = {p.name.split(".", 1)[1] for p in report.files[:-1]}
        for source, is_valid, key, bad, valid in (
            (
                "interactions",
                interaction_is_valid(),
                "interaction_id",
                report.bad_interaction_rows,
                report.valid_interaction_ids,
            ),
            (
                "surveys",
                survey_is_valid(),
                "response_id",
                report.bad_survey_rows,
                report.valid_response_ids,
            ),
        ):
            if not (zone / source).exists():  # nothing to export (no survey answered yet)
                assert bad == valid == 0
                continue
            rows = read_source(zone, source).with_columns(valid=is_valid)
            assert rows.filter(~pl.col("valid")).height == bad
            assert rows.filter("valid")[key].n_unique() == valid

    assert written <= set(formats)


def test_every_defect_kind_is_produced(messy: tuple[Path, GenerateReport]) -> None:
    zone, _ = messy
    manifest = json.loads((zone / MANIFEST_NAME).read_text(encoding="utf-8"))
    produced: dict[str, set[str]] = {"interactions": set(), "surveys": set()}
    for entry in manifest["files"]:
        produced[entry["source"]] |= set(entry["defects"])

    for source in ("interactions", "surveys"):
        assert produced[source] == {d["name"] for d in manifest["defects"][source]}, source
    assert manifest["ground_truth"]["duplicate_interaction_rows"] > 0
    assert manifest["ground_truth"]["duplicate_survey_rows"] > 0


def test_messy_values_look_like_the_listed_cases(messy: tuple[Path, GenerateReport]) -> None:
    zone, _ = messy
    interactions = read_source(zone, "interactions")
    surveys = read_source(zone, "surveys")

    assert {"fax"} <= set(interactions["channel"].drop_nulls())
    assert {"abc"} <= set(interactions["handle_seconds"].drop_nulls())
    assert {"maybe"} <= set(interactions["resolved"].drop_nulls())
    assert {"USD"} <= set(interactions["currency"].drop_nulls())
    assert interactions["started_at"].str.starts_with("2026-02-30").any()
    assert interactions["started_at"].str.starts_with("1999").any()
    assert interactions["started_at"].str.starts_with("2099").any()
    assert (interactions["interaction_id"].str.len_chars() > 64).any()
    assert "8" in set(surveys["perc_rel1"]) and "0" in set(surveys["perc_emp5"])
    assert "11" in set(surveys["nps"])
    assert (surveys["response_id"].str.len_chars() > 64).any()


def test_exact_duplicates_are_whole_row_copies(messy: tuple[Path, GenerateReport]) -> None:
    zone, _ = messy
    manifest = json.loads((zone / MANIFEST_NAME).read_text(encoding="utf-8"))
    interactions = read_source(zone, "interactions").drop("_seq")

    duplicated = interactions.filter(interactions.is_duplicated()).unique().height
    assert duplicated == manifest["ground_truth"]["duplicate_interaction_rows"]


# ---------------------------------------------------------------------------------------------
# Dialects and personal data


def test_files_vary_like_real_exports(clean: tuple[Path, GenerateReport]) -> None:
    zone, report = clean
    csv_files = [p for p in report.files if p.name.endswith(".csv")]
    raw_headers = [pl.read_csv(p, n_rows=0).columns for p in report.files if ".csv" in p.name]
    interactions = read_source(zone, "interactions")

    assert any(p.read_bytes().startswith(b"\xef\xbb\xbf") for p in csv_files)
    assert any(any(h != h.strip().lower() for h in header) for header in raw_headers)
    assert "source_system" in interactions.columns
    columns_per_file = [
        set(read_export(p).columns) for p in report.files if p.parent.name == "interactions"
    ]
    assert any("margin" not in c for c in columns_per_file) and any(
        "margin" in c for c in columns_per_file
    )
    assert any("currency" not in c for c in columns_per_file)
    started = interactions["started_at"]
    assert started.str.ends_with("Z").mean() > 0.5  # type: ignore[operator]
    assert started.str.contains(r"[+-]\d{2}:\d{2}$").any()
    assert started.str.contains(r"T\d{2}:\d{2}:\d{2}$").any()  # naive
    assert len(set(interactions["resolved"].drop_nulls())) >= 6
    assert set(interactions["channel"].drop_nulls()) > set(CHANNELS)  # odd case and spacing too


def test_personal_columns_are_filled(clean: tuple[Path, GenerateReport]) -> None:
    zone, _ = clean
    interactions = read_source(zone, "interactions")
    surveys = read_source(zone, "surveys")

    for column in ("customer_name", "email", "phone", "notes"):
        assert interactions[column].null_count() < interactions.height, column
    assert interactions["email"].str.contains("@").all()
    notes = interactions["notes"].drop_nulls()
    assert (
        notes.str.contains(",").any()
        and notes.str.contains('"').any()
        and notes.str.contains("\n").any()
    )
    assert surveys["comment"].str.contains("Call me on").any()  # a phone number, personal data


def test_reexports_are_later_versions(clean: tuple[Path, GenerateReport]) -> None:
    zone, _ = clean
    interactions = read_source(zone, "interactions")
    reexport = interactions.filter(pl.col("_file").str.contains("reexport"))
    originals = interactions.filter(~pl.col("_file").str.contains("reexport"))
    version = pl.coalesce(timestamp("updated_at"), timestamp("started_at"))
    pairs = reexport.select("interaction_id", version.alias("new")).join(
        originals.select("interaction_id", version.alias("old")), on="interaction_id"
    )

    assert reexport.height == pairs.height > 0
    assert (pairs["new"] > pairs["old"]).all()
    assert reexport.height == pytest.approx(0.05 * originals["interaction_id"].n_unique(), rel=0.05)


# ---------------------------------------------------------------------------------------------
# The shapes the demo and the metrics rely on


def test_first_contact_resolution_is_near_seventy_percent(latest: pl.DataFrame) -> None:
    assert 0.6 <= fcr_rate(latest) <= 0.8


def test_unresolved_contacts_bring_customers_back(latest: pl.DataFrame) -> None:
    contacts = latest.sort("customer_id", "started_at", "interaction_id")
    next_at = pl.col("started_at").shift(-1).over("customer_id")
    followed = contacts.with_columns(
        back=(next_at - pl.col("started_at") <= timedelta(days=7)).fill_null(False)
    )
    by_outcome = dict(followed.group_by("resolved").agg(pl.col("back").mean()).rows())

    assert by_outcome[False] > by_outcome[True] + 0.3


def test_a_few_customers_bring_most_revenue(latest: pl.DataFrame) -> None:
    revenue = latest.group_by("customer_id").agg(pl.col("revenue").sum())
    top = revenue.sort("revenue", descending=True).head(math.ceil(0.2 * revenue.height))

    assert top["revenue"].sum() / revenue["revenue"].sum() > 0.5


def test_some_customers_cost_more_than_they_earn(latest: pl.DataFrame) -> None:
    rates = pl.DataFrame(
        {
            "channel": list(DEFAULT_RATES),
            "per_contact": [r.per_contact for r in DEFAULT_RATES.values()],
            "per_minute": [r.per_minute for r in DEFAULT_RATES.values()],
        }
    )
    contacts = latest.join(rates, on="channel").with_columns(
        cost=pl.col("per_contact") + pl.col("per_minute") * pl.col("handle_seconds") / 60,
        margin=pl.coalesce("margin", pl.col("revenue") * 0.4),  # gross_margin_rate
    )
    profit = contacts.group_by("customer_id").agg((pl.col("margin") - pl.col("cost")).sum())
    cost = dict(contacts.group_by("channel").agg(pl.col("cost").mean()).rows())

    assert 0.05 < (profit["margin"] <= 0).mean() < 0.5  # type: ignore[operator]
    assert cost["visit"] > cost["phone"] > cost["email"] > cost["web"]


def test_channels_have_their_typical_times(latest: pl.DataFrame) -> None:
    medians = latest.group_by("channel").agg(pl.col("handle_seconds", "queue_seconds").median())
    handle = dict(medians.select("channel", "handle_seconds").rows())
    queue = dict(medians.select("channel", "queue_seconds").rows())

    assert 4 * 60 <= handle["phone"] <= 8 * 60
    assert handle["visit"] > handle["phone"] > handle["web"]
    assert handle["web"] < 60
    assert queue["email"] >= 3600 > queue["phone"]


def test_unresolved_contacts_lower_reliability(outcomes: pl.DataFrame) -> None:
    means = dict(outcomes.group_by("resolved").agg(pl.col("reliability").mean()).rows())

    assert means[False] < means[True] - 0.5


def test_long_queues_lower_responsiveness(outcomes: pl.DataFrame) -> None:
    waited = outcomes.drop_nulls("queue_seconds").with_columns(long=pl.col("queue_seconds") > 600)
    means = dict(waited.group_by("long").agg(pl.col("responsiveness").mean()).rows())

    assert means[True] < means[False] - 0.3


def test_surveys_have_perception_only_responses_and_consistent_scores(
    clean: tuple[Path, GenerateReport],
) -> None:
    surveys = read_source(clean[0], "surveys")
    no_expectation = pl.all_horizontal(text(i.expectation_column).is_null() for i in CATALOG.items)
    scores = surveys.select(
        number("nps").alias("nps"), number("csat").alias("csat"), number("ces").alias("ces")
    )

    assert 0.05 < surveys.select(no_expectation.mean()).item() < 0.2
    assert scores["nps"].min() == 0 and scores["nps"].max() == 10
    assert scores.select(pl.corr("nps", "csat")).item() > 0.4
    assert scores.select(pl.corr("nps", "ces")).item() < 0


# ---------------------------------------------------------------------------------------------
# SPEC §6: what customer_value, quality_drivers and service_levels must have to find


def test_some_customers_stop_coming_long_before_the_end(latest: pl.DataFrame) -> None:
    end = latest["started_at"].max()
    regulars = (
        latest.group_by("customer_id")
        .agg(pl.len().alias("contacts"), pl.col("started_at").max().alias("last"))
        .filter(pl.col("contacts") >= 4)
    )
    gone = regulars.select((pl.col("last") < end - timedelta(days=45)).mean()).item()
    # Without churn a customer with ≥ 4 contacts over 120 days almost never goes 45 days quiet.
    assert 0.15 < gone < 0.5


def test_reliability_moves_nps_most(clean: tuple[Path, GenerateReport]) -> None:
    surveys = read_source(clean[0], "surveys").filter(survey_is_valid())
    columns = {
        d: pl.mean_horizontal(number(i.perception_column) for i in CATALOG.items_of(d))
        for d in CATALOG.dimensions
    }
    scored = surveys.select(number("nps").alias("nps"), **columns).drop_nulls()
    weights = relative_weights(
        scored.select(CATALOG.dimensions).to_numpy(), scored["nps"].to_numpy()
    )
    assert weights is not None
    importance = dict(zip(CATALOG.dimensions, weights, strict=True))
    assert max(importance, key=importance.__getitem__) == "reliability"
    assert importance["reliability"] > 2 * importance["tangibles"]
    assert importance["responsiveness"] > importance["tangibles"]


def test_queues_breach_their_default_targets(latest: pl.DataFrame) -> None:
    judged = latest.drop_nulls("queue_seconds").filter(pl.col("channel") != "web")
    targets = pl.col("channel").replace_strict({k: v for k, v in DEFAULT_SLA.items() if v})
    rates = dict(judged.group_by("channel").agg((pl.col("queue_seconds") > targets).mean()).rows())
    assert rates["phone"] > 0.3 and rates["chat"] > 0.3
    assert 0.05 < rates["visit"] < rates["phone"]
    assert rates["email"] < 0.1
