"""Seeded sample exports for servio: a landing zone of interaction and survey exports shaped like
a real CRM's (SPEC §1), with deliberate defects and a ground-truth manifest to check servio against.

Everything bulk is vectorised (numpy draws, Polars strings); only the per-kind defect overrides are
expressions built in Python. Same options → byte-identical files.
"""

from __future__ import annotations

import json
import math
import time
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from servio.schemas.catalog import SCALE_MAX, SCALE_MIN, ItemCatalog, load_catalog
from servio.schemas.channels import CHANNELS
from servio.schemas.raw import INTERACTIONS_RAW, MAX_ID_LENGTH, surveys_raw

MANIFEST_NAME = "_generator_manifest.json"
FORMATS = ("csv", "csv.gz", "jsonl", "jsonl.gz", "ndjson", "parquet")
CSV_FORMATS = ("csv", "csv.gz")
TEXT_FORMATS = ("csv", "csv.gz", "jsonl", "jsonl.gz", "ndjson")
MAX_ROWS_PER_FILE = 1_000_000
WRITERS = 2
DAY = 86_400

Int = NDArray[np.int64]
Float = NDArray[np.float64]
Bool = NDArray[np.bool_]


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate; the same options always give the same bytes."""

    customers: int = 2_000
    days: int = 120
    seed: int = 42
    messiness: float = 0.03  # share of deliberately bad rows; 0 = perfectly clean
    end_date: date = date(2026, 11, 26)  # last day of activity (UTC)
    interactions_per_customer: float = 6.0  # mean
    survey_rate: float = 0.25  # share of contacts with a survey response
    reexport_rate: float = 0.05  # share of interactions re-exported later with later updated_at
    formats: tuple[str, ...] = ("csv", "csv.gz", "jsonl", "parquet")

    def check(self) -> None:
        """Raise ValueError naming the option and its expected form."""
        problems = []
        if self.customers < 1:
            problems.append(f"customers must be ≥ 1, got {self.customers}")
        if self.days < 1:
            problems.append(f"days must be ≥ 1, got {self.days}")
        if self.interactions_per_customer <= 0:
            problems.append(
                f"interactions_per_customer must be > 0, got {self.interactions_per_customer}"
            )
        for name, limit in (("messiness", 0.5), ("survey_rate", 1), ("reexport_rate", 1)):
            value = getattr(self, name)
            if not 0 <= value <= limit:
                problems.append(f"{name} must be between 0 and {limit}, got {value}")
        if not self.formats:
            problems.append("formats must name at least one format")
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            problems.append(f"unknown format {unknown[0]!r}; formats are {', '.join(FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            problems.append("formats must not repeat")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class GenerateReport:
    """What was written, for the CLI summary and for tests."""

    files: list[Path]
    interaction_rows: int
    survey_rows: int
    valid_interaction_ids: int  # distinct interaction_ids that servio must curate (ground truth)
    valid_response_ids: int
    bad_interaction_rows: int  # rows deliberately broken (must be quarantined)
    bad_survey_rows: int
    seconds: float


# ---------------------------------------------------------------------------------------------
# The shape of the business: channels, reasons, customers


@dataclass(frozen=True)
class ChannelProfile:
    """Typical share, handle and queue times (lognormal medians, seconds) and resolution rate."""

    share: float
    handle_median: float
    handle_sigma: float
    queue_median: float
    queue_sigma: float
    queue_null_share: float  # export has no queue time
    resolve_rate: float
    sale_factor: float
    agents: int  # size of the agent pool; 0 = self-service, no agent


CHANNEL_PROFILES: dict[str, ChannelProfile] = {
    "phone": ChannelProfile(0.34, 330, 0.45, 70, 1.1, 0.03, 0.78, 1.0, 60),
    "chat": ChannelProfile(0.22, 450, 0.45, 40, 1.0, 0.03, 0.74, 0.9, 40),
    "email": ChannelProfile(0.18, 260, 0.55, 5 * 3600, 0.8, 0.05, 0.70, 0.6, 30),
    "visit": ChannelProfile(0.08, 950, 0.40, 360, 0.7, 0.10, 0.84, 1.4, 20),
    "web": ChannelProfile(0.18, 25, 0.60, 0, 0.0, 0.60, 0.62, 1.6, 0),
}
assert tuple(CHANNEL_PROFILES) == CHANNELS, "one profile per SPEC channel, in CHANNELS order"

REASONS = ("billing", "order", "complaint", "info", "technical", "returns")
REASON_SHARES = (0.20, 0.25, 0.10, 0.20, 0.13, 0.12)
REASON_SALE_RATE = (0.25, 0.80, 0.05, 0.45, 0.20, 0.10)
REFUND_REASONS = ("complaint", "returns")
NULL_REASON_SHARE = 0.03
CHANNEL_LOYALTY = 0.6  # share of contacts on the customer's preferred channel
RETURN_AFTER_UNRESOLVED = 0.8  # an unresolved issue brings the customer back
MAX_CONTACTS_PER_ISSUE = 4
SAME_REASON_ON_RETURN = 0.9

# SERVQUAL regularities: expectations run highest on reliability, lowest on tangibles.
EXPECTATION_OFFSET = {
    "tangibles": -0.6,
    "reliability": 0.5,
    "responsiveness": 0.2,
    "assurance": 0.1,
    "empathy": -0.2,
}
PERCEPTION_OFFSET = {
    "tangibles": 0.2,
    "reliability": -0.1,
    "responsiveness": -0.1,
    "assurance": 0.1,
    "empathy": 0.0,
}
# What moves the recommendation score (NPS): reliability most, tangibles least (SPEC §6
# quality_drivers should find this order). Each dimension also varies on its own per response
# (DIMENSION_NOISE), or the five perceptions would be too collinear to tell apart.
NPS_DRIVER_WEIGHTS = {
    "reliability": 0.45,
    "responsiveness": 0.25,
    "empathy": 0.15,
    "assurance": 0.10,
    "tangibles": 0.05,
}
DIMENSION_NOISE = 0.6
# Customers who leave: this share stops all activity (purchases included) at a random point
# of the period, after ACTIVE_SHARE_RANGE of it (SPEC §6 customer_value: p_alive must see them).
CHURN_SHARE = 0.35
ACTIVE_SHARE_RANGE = (0.1, 0.8)
ITEM_ANSWER_RATE = 0.93
PERCEPTION_ONLY_SHARE = 0.10
RELATIONSHIP_SURVEY_SHARE = 0.03  # responses not tied to one contact


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "Anna Ben Chloé David Elif Fatima Georg Hannah Ivan Jana Karim Lena Marco Nora Oskar Paula "
    "Quentin Rosa Sven Tomás Ute Victor Wiebke Xavier Yusuf Zoë Mia Luca Sofia Noah Emma Jonas"
)
LAST_NAMES = _words(
    "Müller Schmidt García Rossi Dubois Nowak Jansen Yılmaz O'Brien Silva Novák Berg Fischer Weber "
    "Martin Kowalski Costa Lefèvre Horvat Andersen Meyer Wagner Becker Hoffmann"
)
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example")
NOTES = {
    "billing": (
        "Customer asked why the invoice is higher than last month",
        'Disputes fee, says "I never agreed to this"',
        "Wants invoice copy sent, by post",
    ),
    "order": (
        "Placed order by phone",
        "Order status: delayed, promised callback",
        "Asked to change delivery address\nnew address given, verified",
    ),
    "complaint": (
        'Very upset: "third time I call about this"',
        "Complaint about rude staff, escalated",
        "Item arrived damaged; photos requested\nfollow-up needed",
    ),
    "info": (
        "Asked about opening hours",
        "Wants info on the new tariff, prices, contract length",
        "General question, answered",
    ),
    "technical": (
        "Device does not start; reset steps given",
        'Error "E42" on login, ticket opened',
        "Router reboot did not help\ntechnician visit offered",
    ),
    "returns": ("Return label sent", "Refund requested, item unused", 'Says "wrong size, again"'),
    "": ("Call dropped", "No reason given", "Customer, unclear request"),
}
POSITIVE_COMMENTS = (
    "Quick and friendly, thanks!",
    "Problem solved in one call. Great.",
    'Agent was "super helpful", 10/10',
    "Easy, fast, no waiting",
)
NEUTRAL_COMMENTS = (
    "OK, but the wait was long",
    "Fine, nothing special",
    "Solved eventually, took two tries",
)
NEGATIVE_COMMENTS = (
    "Waited forever, nobody called back",
    'Still broken. "We will fix it" they said',
    "Had to explain everything again,\nvery frustrating",
    "Charged twice, still no refund; call me",
)
TIMESTAMP_STYLES = (("Z", 0), ("+02:00", 7200), ("-05:00", -18000), ("+05:30", 19800), ("", 0))
TIMESTAMP_STYLE_SHARES = (0.80, 0.06, 0.04, 0.02, 0.08)  # "" = naive, which servio reads as UTC
BOOLEAN_SPELLINGS = (
    ("true", "false"),
    ("1", "0"),
    ("yes", "no"),
    ("Y", "N"),
    ("TRUE", "FALSE"),
    ("Yes", "No"),
)


def _ascii(name: str) -> str:
    """The name as an e-mail local part: accents dropped, letters only, lower case."""
    return "".join(
        c for c in unicodedata.normalize("NFKD", name) if c.isascii() and c.isalpha()
    ).lower()


def _draw(rng: np.random.Generator, shares: Sequence[float], n: int) -> NDArray[np.int8]:
    """Category codes 0..len(shares)-1 drawn with the given shares."""
    cumulative = np.cumsum(np.asarray(shares, dtype=np.float64))
    codes = np.searchsorted(cumulative / cumulative[-1], rng.random(n), side="right")
    return np.minimum(codes, len(shares) - 1).astype(np.int8)


def _lookup(values: Sequence[str | None], codes: Any) -> pl.Series:
    """values[code] for each code, as a String Series (vectorised gather)."""
    return pl.Series(values=list(values), dtype=pl.String).gather(_index(codes))


def _index(positions: Any) -> pl.Series:
    """Gather positions as Polars wants them (unsigned 32-bit, no cast on its side)."""
    return pl.Series(np.asarray(positions).astype(np.uint32, copy=False))


@dataclass
class Customers:
    """One entry per customer; arrays indexed by customer number (0-based)."""

    ids: pl.Series
    intensity: Float  # relative contact frequency, mean 1
    basket: Float  # typical sale, heavy-tailed
    buy_rate: Float  # propensity to buy in a contact
    margin_rate: Float
    channel: NDArray[np.int8]  # preferred channel
    expectation: Float  # personal expectation baseline (1–7 scale)
    mood: Float  # personal perception bias
    name: pl.Series
    first_name_code: NDArray[np.int64]
    email: pl.Series
    phone: pl.Series


def _customers(rng: np.random.Generator, n: int) -> Customers:
    intensity = rng.lognormal(0.0, 0.7, n)
    first = rng.integers(0, len(FIRST_NAMES), n)
    last = rng.integers(0, len(LAST_NAMES), n)
    first_name = _lookup(FIRST_NAMES, first)
    last_name = _lookup(LAST_NAMES, last)
    names = pl.DataFrame(
        {
            "first": first_name,
            "last": last_name,
            "a_first": _lookup([_ascii(f) for f in FIRST_NAMES], first),
            "a_last": _lookup([_ascii(s) for s in LAST_NAMES], last),
            "surname_first": rng.random(n) < 0.1,
            "mail_number": pl.Series(rng.integers(1, 100, n)).cast(pl.String),
            "domain": _lookup(EMAIL_DOMAINS, rng.integers(0, len(EMAIL_DOMAINS), n)),
            "area": pl.Series(rng.integers(20, 990, n)).cast(pl.String),
            "line": pl.Series(rng.integers(0, 10_000_000, n)).cast(pl.String).str.zfill(7),
            "phone_style": rng.integers(0, 3, n),
        }
    )
    people = names.select(
        name=pl.when("surname_first")
        .then(pl.format("{}, {}", "last", "first"))
        .otherwise(pl.format("{} {}", "first", "last")),
        email=pl.format("{}.{}{}@{}", "a_first", "a_last", "mail_number", "domain"),
        phone=pl.when(pl.col("phone_style") == 0)
        .then(pl.format("+49 {} {}", "area", "line"))
        .when(pl.col("phone_style") == 1)
        .then(pl.format("+33 {}{}", pl.col("area").str.head(1), "line"))
        .otherwise(pl.format("({}) 555-{}", "area", pl.col("line").str.tail(4))),
    )
    return Customers(
        ids=_ids("C", np.arange(1, n + 1), max(6, len(str(n)))),
        intensity=intensity / intensity.mean(),
        basket=rng.lognormal(math.log(110.0), 0.9, n),
        buy_rate=rng.beta(2.5, 1.5, n) * 1.5,
        margin_rate=rng.uniform(0.25, 0.55, n),
        channel=_draw(rng, [p.share for p in CHANNEL_PROFILES.values()], n),
        expectation=rng.normal(5.3, 0.6, n),
        mood=rng.normal(0.0, 0.5, n),
        name=people["name"],
        first_name_code=first,
        email=people["email"],
        phone=people["phone"],
    )


def _contacts_per_issue() -> float:
    """Expected contacts per issue: an unresolved contact brings the customer back."""
    unresolved = sum(p.share * (1 - p.resolve_rate) for p in CHANNEL_PROFILES.values())
    repeat = unresolved * RETURN_AFTER_UNRESOLVED
    return sum(repeat**k for k in range(MAX_CONTACTS_PER_ISSUE))


@dataclass
class Contacts:
    """One entry per generated service contact ("record"), in started_at order."""

    customer: NDArray[np.int32]
    started: Int  # epoch seconds, UTC
    channel: NDArray[np.int8]
    reason: NDArray[np.int8]  # -1 = null
    handle: NDArray[np.int32]
    queue: NDArray[np.float32]  # NaN = not exported
    resolved: Bool
    attempt: NDArray[np.int8]  # 0 = first contact about the issue
    revenue_cents: Int
    has_revenue: Bool  # False = null revenue in the export


def _period(options: GenerateOptions) -> tuple[int, int]:
    """First and last second (epoch, UTC) of the activity period."""
    first_day = options.end_date - timedelta(days=options.days - 1)
    start = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC).timestamp())
    return start, start + options.days * DAY - 1


def _contacts(rng: np.random.Generator, people: Customers, options: GenerateOptions) -> Contacts:
    """Issues arrive per customer; each contact resolves the issue or the customer comes back."""
    period_start, period_end = _period(options)
    issues_per_customer = options.interactions_per_customer / _contacts_per_issue()
    issues = rng.poisson(issues_per_customer * people.intensity)
    customer = np.repeat(np.arange(len(issues), dtype=np.int32), issues)
    n = len(customer)
    business_hours = rng.normal(13.5 * 3600, 3.2 * 3600, n)
    at_night = (
        (rng.random(n, dtype=np.float32) >= 0.85) | (business_hours < 0) | (business_hours >= DAY)
    )
    time_of_day = np.where(at_night, rng.uniform(0, DAY, n), business_hours)
    churns = rng.random(len(issues)) < CHURN_SHARE
    active_days = options.days * np.where(churns, rng.uniform(*ACTIVE_SHARE_RANGE, len(issues)), 1)
    day = np.minimum(np.floor(rng.random(n) * active_days[customer]), options.days - 1)
    started = period_start + day.astype(np.int64) * DAY + time_of_day.astype(np.int64)
    reason = _draw(rng, [*REASON_SHARES, NULL_REASON_SHARE], n)
    reason[reason == len(REASONS)] = -1

    profiles = list(CHANNEL_PROFILES.values())
    handle_median = np.array([p.handle_median for p in profiles], dtype=np.float32)
    handle_sigma = np.array([p.handle_sigma for p in profiles], dtype=np.float32)
    queue_median = np.array([p.queue_median for p in profiles], dtype=np.float32)
    queue_sigma = np.array([p.queue_sigma for p in profiles], dtype=np.float32)
    queue_null = np.array([p.queue_null_share for p in profiles], dtype=np.float32)
    resolve_rate = np.array([p.resolve_rate for p in profiles], dtype=np.float32)
    shares = [p.share for p in profiles]
    web, phone = CHANNELS.index("web"), CHANNELS.index("phone")

    parts: list[dict[str, NDArray[Any]]] = []
    previous_channel: NDArray[np.int8] | None = None
    for attempt in range(MAX_CONTACTS_PER_ISSUE):
        m = len(customer)
        loyal = rng.random(m, dtype=np.float32) < CHANNEL_LOYALTY
        channel = np.where(loyal, people.channel[customer], _draw(rng, shares, m))
        if previous_channel is not None:  # self-service failed: half escalate to the phone
            escalate = (previous_channel == web) & (rng.random(m, dtype=np.float32) < 0.5)
            channel = np.where(escalate, phone, channel)
        channel = channel.astype(np.int8)
        spread = np.exp(handle_sigma[channel] * rng.standard_normal(m, dtype=np.float32))
        handle = np.clip(np.rint(handle_median[channel] * spread), 1, 6 * 3600).astype(np.int32)
        spread = np.exp(queue_sigma[channel] * rng.standard_normal(m, dtype=np.float32))
        queue = np.minimum(np.rint(queue_median[channel] * spread), 3 * DAY)
        queue[rng.random(m, dtype=np.float32) < queue_null[channel]] = np.nan
        resolved = rng.random(m, dtype=np.float32) < np.minimum(
            resolve_rate[channel] + 0.06 * attempt, 0.97
        )
        inside = started <= period_end
        parts.append(
            {
                "customer": customer[inside],
                "started": started[inside],
                "channel": channel[inside],
                "reason": reason[inside],
                "handle": handle[inside],
                "queue": queue[inside],
                "resolved": resolved[inside],
                "attempt": np.full(int(inside.sum()), attempt, dtype=np.int8),
            }
        )
        back = inside & ~resolved & (rng.random(m, dtype=np.float32) < RETURN_AFTER_UNRESOLVED)
        k = int(back.sum())
        gap = np.maximum(np.rint(20 * 3600 * np.exp(rng.standard_normal(k))), 600).astype(np.int64)
        new_reason = _draw(rng, [*REASON_SHARES, NULL_REASON_SHARE], k)
        new_reason[new_reason == len(REASONS)] = -1
        same = rng.random(k, dtype=np.float32) < SAME_REASON_ON_RETURN
        reason = np.where(same, reason[back], new_reason).astype(np.int8)
        started = started[back] + handle[back] + gap
        customer = customer[back]
        previous_channel = channel[back]

    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    m = len(merged["started"])
    # Unique sort keys (time, then generation order): any sort algorithm gives the same order.
    order = np.argsort((merged["started"] - period_start) * m + np.arange(m))
    c = {key: value[order] for key, value in merged.items()}

    # Sales and refunds: reason, channel and the customer's own basket and buying habit.
    sale_by_reason = np.array([*REASON_SALE_RATE, 0.15], dtype=np.float32)[
        c["reason"]
    ]  # -1: null reason
    sale_factor = np.array([p.sale_factor for p in profiles], dtype=np.float32)[c["channel"]]
    sale_rate = np.minimum(sale_by_reason * sale_factor * people.buy_rate[c["customer"]], 0.95)
    sale = rng.random(m, dtype=np.float32) < sale_rate
    amount = people.basket[c["customer"]] * np.exp(0.5 * rng.standard_normal(m))
    refund_reason = np.isin(c["reason"], [REASONS.index(r) for r in REFUND_REASONS])
    refund = ~sale & refund_reason & (rng.random(m, dtype=np.float32) < 0.15)
    cents = np.where(
        sale, np.rint(amount * 100), np.where(refund, -np.rint(amount * 70), 0)
    ).astype(np.int64)
    cents = np.clip(cents, -99_999_999, 99_999_999)
    has_revenue = sale | refund | (rng.random(m, dtype=np.float32) < 0.2)  # otherwise null (= 0)
    return Contacts(
        customer=c["customer"],
        started=c["started"],
        channel=c["channel"],
        reason=c["reason"],
        handle=c["handle"],
        queue=c["queue"],
        resolved=c["resolved"],
        attempt=c["attempt"],
        revenue_cents=cents,
        has_revenue=has_revenue,
    )


# ---------------------------------------------------------------------------------------------
# Defects: one rule broken per bad row, each with the reason servio must quarantine it for


Value = str | int | float | datetime | pl.Expr | None


@dataclass(frozen=True)
class Defect:
    """A deliberate defect: which values of a row it overwrites, and the rule that row breaks."""

    name: str
    reason: str  # the quarantine reason code servio's rules give it (`rule:column`)
    detail: str
    values: dict[str, Value]
    typed: bool = True  # representable in typed Parquet columns
    needs: str | None = None  # a column the file must carry


def _too_long(column: str) -> pl.Expr:
    return pl.col(column) + "-" + "x" * MAX_ID_LENGTH


INTERACTION_DEFECTS = (
    Defect(
        "handle_not_a_number",
        "type:handle_seconds",
        "'abc' is not a number",
        {"handle_seconds": "abc"},
        typed=False,
    ),
    Defect(
        "queue_not_a_number",
        "type:queue_seconds",
        "'1.2.3' is not a number",
        {"queue_seconds": "1.2.3"},
        typed=False,
    ),
    Defect(
        "revenue_not_a_number",
        "type:revenue",
        "'ten' is not a decimal",
        {"revenue": "ten"},
        typed=False,
    ),
    Defect("handle_negative", "range:handle_seconds", "-30 < 0", {"handle_seconds": -30}),
    Defect("handle_too_long", "range:handle_seconds", "90000 > 86400", {"handle_seconds": 90_000}),
    Defect("queue_too_long", "range:queue_seconds", "700000 > 604800", {"queue_seconds": 700_000}),
    Defect("revenue_too_large", "range:revenue", "|2e9| > 1e9", {"revenue": 2_000_000_000.0}),
    Defect("unknown_channel", "allowed:channel", "'fax' is not a channel", {"channel": "fax"}),
    Defect("missing_interaction_id", "required:interaction_id", "null", {"interaction_id": None}),
    Defect("missing_customer_id", "required:customer_id", "null", {"customer_id": None}),
    Defect("missing_channel", "required:channel", "null", {"channel": None}),
    Defect("missing_started_at", "required:started_at", "null", {"started_at": None}),
    Defect("missing_handle_seconds", "required:handle_seconds", "null", {"handle_seconds": None}),
    Defect("missing_resolved", "required:resolved", "null", {"resolved": None}),
    Defect(
        "foreign_currency",
        "currency:currency",
        "'USD' is not the reporting currency EUR",
        {"currency": "USD"},
        needs="currency",
    ),
    Defect(
        "impossible_date",
        "type:started_at",
        "2026-02-30 does not exist",
        {"started_at": "2026-02-30T10:15:00Z"},
        typed=False,
    ),
    Defect(
        "started_before_2000",
        "too_old:started_at",
        "before 2000-01-01",
        {"started_at": datetime(1999, 12, 31, 23, 0, tzinfo=UTC)},
    ),
    Defect(
        "started_in_future",
        "future:started_at",
        "after ingestion time + 1 day",
        {"started_at": datetime(2099, 1, 1, 9, 0, tzinfo=UTC)},
    ),
    Defect(
        "bad_boolean",
        "type:resolved",
        "'maybe' is not a boolean",
        {"resolved": "maybe"},
        typed=False,
    ),
    Defect(
        "interaction_id_too_long",
        "length:interaction_id",
        "over 64 characters",
        {"interaction_id": _too_long("interaction_id")},
    ),
    Defect(
        "customer_id_too_long",
        "length:customer_id",
        "over 64 characters",
        {"customer_id": _too_long("customer_id")},
    ),
)


def _survey_defects(catalog: ItemCatalog) -> tuple[Defect, ...]:
    technical = catalog.items_on_side("technical") or catalog.items
    functional = catalog.items_on_side("functional") or catalog.items
    perc_t, perc_f = technical[0].perception_column, functional[-1].perception_column
    exp_f = functional[0].expectation_column
    silent: dict[str, Value] = {c: None for c in catalog.answer_columns}
    silent.update(nps=None, csat=None, ces=None)
    return (
        Defect("perception_above_scale", f"range:{perc_t}", "8 > 7", {perc_t: 8}),
        Defect("perception_below_scale", f"range:{perc_f}", "0 < 1", {perc_f: 0}),
        Defect("expectation_above_scale", f"range:{exp_f}", "8 > 7", {exp_f: 8}),
        Defect("nps_above_scale", "range:nps", "11 > 10", {"nps": 11}),
        Defect("csat_below_scale", "range:csat", "0 < 1", {"csat": 0}),
        Defect("ces_above_scale", "range:ces", "8 > 7", {"ces": 8}),
        Defect(
            "score_not_a_number",
            f"type:{perc_t}",
            "'abc' is not a whole number",
            {perc_t: "abc"},
            typed=False,
        ),
        Defect("no_answers", "no_answer", "no perception item, nps, csat or ces answered", silent),
        Defect("missing_response_id", "required:response_id", "null", {"response_id": None}),
        Defect("missing_customer_id", "required:customer_id", "null", {"customer_id": None}),
        Defect("missing_submitted_at", "required:submitted_at", "null", {"submitted_at": None}),
        Defect(
            "impossible_date",
            "type:submitted_at",
            "2026-02-30 does not exist",
            {"submitted_at": "2026-02-30T18:00:00Z"},
            typed=False,
        ),
        Defect(
            "submitted_before_2000",
            "too_old:submitted_at",
            "before 2000-01-01",
            {"submitted_at": datetime(1999, 6, 1, 12, 0, tzinfo=UTC)},
        ),
        Defect(
            "submitted_in_future",
            "future:submitted_at",
            "after ingestion time + 1 day",
            {"submitted_at": datetime(2099, 3, 1, 12, 0, tzinfo=UTC)},
        ),
        Defect(
            "response_id_too_long",
            "length:response_id",
            "over 64 characters",
            {"response_id": _too_long("response_id")},
        ),
    )


# ---------------------------------------------------------------------------------------------
# Export files: how each file of a source is laid out


@dataclass(frozen=True)
class ExportFile:
    """One export file: where it goes, which columns it carries and its dialect quirks."""

    source: str
    name: str
    fmt: str
    columns: tuple[str, ...]  # contract + personal columns it carries, in file order
    bom: bool = False
    messy_header: bool = False  # header names in odd case and spacing, CRLF line ends
    extra: tuple[tuple[str, str], ...] = ()  # unknown columns and their constant value
    native_booleans: bool = True  # JSON booleans rather than spelled-out text
    naive_parquet_timestamps: bool = False

    @property
    def path(self) -> str:
        return f"{self.source}/{self.name}.{self.fmt}"


def _file_dialects(
    source: str, count: int, formats: tuple[str, ...], offset: int
) -> list[dict[str, Any]]:
    """Format and dialect of each of `count` files: formats rotate; quirks go to one file each."""
    fmts = [formats[(i + offset) % len(formats)] for i in range(count)]
    csv_files = [i for i, f in enumerate(fmts) if f in CSV_FORMATS]
    bom = csv_files[0] if csv_files else None
    messy = csv_files[-1] if csv_files else None
    return [
        {
            "fmt": fmts[i],
            "bom": i == bom,
            "messy_header": i == messy,
            "native_booleans": i % 2 == 0,
            "naive_parquet_timestamps": i % 2 == 1,
            "extra": (("source_system", "crm-eu-1"),) if i % 2 == 1 else (),
        }
        for i in range(count)
    ]


def _file_count(rows: int, days: int, formats: tuple[str, ...]) -> int:
    """About one export per month, at least one per format, at most MAX_ROWS_PER_FILE rows each."""
    return max(len(formats), math.ceil(days / 30), math.ceil(rows / MAX_ROWS_PER_FILE), 1)


def _split(n: int, files: int) -> Int:
    """Start offsets of `files` contiguous, nearly equal chunks of n rows (and n at the end)."""
    return np.array([(n * i) // files for i in range(files + 1)], dtype=np.int64)


def _messy_header(names: Sequence[str]) -> dict[str, str]:
    """Header names as a hand-edited export has them: padded, capitalised, shouting."""

    def messy(position: int, name: str) -> str:
        if "_" not in name:
            return f" {name.capitalize()} "
        return name.upper() if position % 2 else "_".join(p.capitalize() for p in name.split("_"))

    return {name: messy(i, name) for i, name in enumerate(names)}


# ---------------------------------------------------------------------------------------------
# Rendering: typed frame → the text or Parquet a source system would export


def _timestamp_text(column: str) -> pl.Expr:
    """ISO-8601 in the row's style: Z, an offset (same instant) or naive (UTC)."""
    styles = list(range(len(TIMESTAMP_STYLES)))
    offsets = pl.col("_ts_style").replace_strict(
        styles, [seconds for _, seconds in TIMESTAMP_STYLES], return_dtype=pl.Int64
    )
    suffix = pl.col("_ts_style").replace_strict(
        styles, [text for text, _ in TIMESTAMP_STYLES], return_dtype=pl.String
    )
    local = (pl.col(column) + pl.duration(seconds=offsets)).dt.strftime("%Y-%m-%dT%H:%M:%S")
    return (local + suffix).alias(column)


def _boolean_text(column: str) -> pl.Expr:
    spelled = [s for pair in BOOLEAN_SPELLINGS for s in reversed(pair)]  # false, true per style
    code = pl.col("_bool_style").cast(pl.Int64) * 2 + pl.col(column).cast(pl.Int64)
    return code.replace_strict(list(range(len(spelled))), spelled, return_dtype=pl.String).alias(
        column
    )


def _as_text(value: Value) -> Value:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _with_defects(frame: pl.DataFrame, defects: Sequence[Defect]) -> pl.DataFrame:
    """Overwrite the values each bad row's defect names (`_defect` = index into defects, -1 = none)."""
    present = sorted({int(k) for k in frame["_defect"].unique() if k is not None and k >= 0})
    if not present:
        return frame
    by_column: dict[str, list[tuple[int, Value]]] = {}
    for k in present:
        for column, value in defects[k].values.items():
            if column in frame.columns:
                by_column.setdefault(column, []).append((k, value))
    updates = []
    for column, changes in by_column.items():
        dtype = frame.schema[column]
        if any(isinstance(v, str) for _, v in changes) and dtype != pl.String:
            frame = frame.with_columns(_text_of(column, dtype))
            dtype = pl.String()
        expr: Any = pl
        for k, value in changes:
            if dtype == pl.String:
                value = _as_text(value)
            elif (
                isinstance(value, datetime)
                and isinstance(dtype, pl.Datetime)
                and dtype.time_zone is None
            ):
                value = value.astimezone(UTC).replace(tzinfo=None)
            literal = value if isinstance(value, pl.Expr) else pl.lit(value, dtype=dtype)
            expr = expr.when(pl.col("_defect") == k).then(literal)
        updates.append(expr.otherwise(pl.col(column)).alias(column))
    return frame.with_columns(updates)


def _text_of(column: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        return pl.col(column).dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias(column)
    return pl.col(column).cast(pl.String).alias(column)


def _render(
    frame: pl.DataFrame,
    spec: ExportFile,
    timestamps: Sequence[str],
    booleans: Sequence[str],
    defects: Sequence[Defect],
) -> pl.DataFrame:
    """The file's columns as its source system would write them."""
    if spec.fmt == "parquet":
        if spec.naive_parquet_timestamps:
            frame = frame.with_columns(pl.col(c).dt.replace_time_zone(None) for c in timestamps)
    else:
        styled = [_timestamp_text(c) for c in timestamps]
        if not (spec.native_booleans and spec.fmt not in CSV_FORMATS):
            styled += [_boolean_text(c) for c in booleans]
        frame = frame.with_columns(styled)
    frame = _with_defects(frame, defects)
    extra = [pl.lit(value).alias(name) for name, value in spec.extra]
    out = frame.select(*spec.columns, *extra)
    if spec.messy_header:
        out = out.select(reversed(out.columns))
        out = out.rename(_messy_header(out.columns))
    return out


def _write(frame: pl.DataFrame, path: Path, spec: ExportFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if spec.fmt in CSV_FORMATS:
        frame.write_csv(
            path,
            include_bom=spec.bom,
            line_terminator="\r\n" if spec.messy_header else "\n",
            compression="gzip" if spec.fmt == "csv.gz" else "uncompressed",
            compression_level=1 if spec.fmt == "csv.gz" else None,
            check_extension=False,
        )
    elif spec.fmt == "parquet":
        frame.write_parquet(path, compression="zstd", compression_level=1, statistics=True)
    else:
        gz = spec.fmt.endswith(".gz")
        frame.write_ndjson(
            path,
            compression="gzip" if gz else "uncompressed",
            compression_level=1 if gz else None,
            check_extension=False,
        )


# ---------------------------------------------------------------------------------------------
# Sources


@dataclass
class SourcePlan:
    """One source's export files, each with a recipe for its typed rows.

    A file's rows carry helper columns saying how each row is written: `_defect`, `_ts_style`
    (and `_bool_style`). Rows are built per file, inside the writer, so files are built in
    parallel and only a few are in memory at once.
    """

    files: list[tuple[ExportFile, int, Callable[[], pl.DataFrame]]]  # spec, row count, rows
    defects: tuple[Defect, ...]
    timestamps: tuple[str, ...]
    booleans: tuple[str, ...]
    clean: Bool  # per generated record: carries no defect
    id_width: int
    counts: dict[str, int] = field(default_factory=dict)
    revenue_cents: int = 0  # ground truth: revenue of the latest valid versions

    @property
    def rows(self) -> int:
        return sum(count for _, count, _ in self.files)


def _assign_defects(
    rng: np.random.Generator,
    files: list[ExportFile],
    file_of_row: Int,
    bad: int,
    defects: Sequence[Defect],
) -> NDArray[np.int32]:
    """Pick `bad` records and give each a defect its file can carry (index into defects; -1 = clean).

    Defects rotate within each file, so every kind appears once there are enough bad rows.
    """
    n = len(file_of_row)
    out = np.full(n, -1, dtype=np.int32)
    if bad <= 0 or n == 0:
        return out
    victims = np.sort(rng.choice(n, size=min(bad, n), replace=False))
    # Text that is not a number or a date needs a text column: CSV has nothing else; JSON and
    # Parquet keep their native types unless no CSV file exists to carry those defects.
    untyped_in = CSV_FORMATS if any(f.fmt in CSV_FORMATS for f in files) else TEXT_FORMATS
    for i, spec in enumerate(files):
        allowed = [
            k
            for k, d in enumerate(defects)
            if (d.typed or spec.fmt in untyped_in) and (d.needs is None or d.needs in spec.columns)
        ]
        in_file = victims[file_of_row[victims] == i]
        start = int(rng.integers(0, len(allowed)))
        out[in_file] = np.asarray(allowed, dtype=np.int32)[
            (np.arange(len(in_file)) + start) % len(allowed)
        ]
    return out


def _with_duplicates(
    rng: np.random.Generator, candidates: Int, count: int, bounds: Int, file_of_row: Int
) -> tuple[Int, int]:
    """Row order of a file set where `count` records (among candidates) appear twice.

    Returns the record behind each written row, and how many copies were added; each copy
    sits at a random place in its record's file.
    """
    n = len(file_of_row)
    copies = np.sort(rng.choice(candidates, size=min(count, len(candidates)), replace=False))
    file = file_of_row[copies]
    place = bounds[file] + rng.integers(0, bounds[file + 1] - bounds[file] + 1)
    return np.insert(np.arange(n, dtype=np.int64), place, copies), len(copies)


def _ids(prefix: str, numbers: Any, width: int) -> pl.Series:
    """prefix + zero-padded number, e.g. I000000042."""
    digits = (
        (pl.Series(np.asarray(numbers, dtype=np.int64)) + 10**width).cast(pl.String).str.slice(1)
    )
    return pl.select(pl.lit(prefix) + pl.lit(digits)).to_series()


def _where(keep: Bool, values: pl.Series) -> pl.Series:
    """values where keep, else null."""
    return (
        pl.select(pl.when(pl.lit(pl.Series(keep))).then(pl.lit(values)))
        .to_series()
        .alias(values.name)
    )


def _utc(epoch_seconds: Int) -> pl.Series:
    return pl.Series(np.asarray(epoch_seconds, dtype=np.int64) * 1_000_000).cast(
        pl.Datetime("us", "UTC")
    )


def _day(epoch_seconds: int) -> date:
    return datetime.fromtimestamp(int(epoch_seconds), tz=UTC).date()


def _span(epoch_seconds: Int) -> str:
    """File-name date range of a chunk of rows sorted by time."""
    if len(epoch_seconds) == 0:
        return "empty"
    return f"{_day(int(epoch_seconds[0])):%Y%m%d}-{_day(int(epoch_seconds[-1])):%Y%m%d}"


CHANNEL_TEXTS = [v for c in CHANNELS for v in (c, c.capitalize(), c.upper(), f" {c} ")]
REASON_TEXTS = [*(v for r in REASONS for v in (r, r.capitalize(), f" {r} ")), None, None, None]
_BASE_NOTES = [text for key in (*REASONS, "") for text in NOTES[key]]
NOTE_TEXTS = [
    *_BASE_NOTES,
    *(f"Spoke with {first}. {text}" for first in FIRST_NAMES for text in _BASE_NOTES),
    None,
]

AGENT_TEXTS = [
    None,
    *(f"AG{k:04d}" for k in range(1, 1 + sum(p.agents for p in CHANNEL_PROFILES.values()))),
]


@dataclass
class InteractionLook:
    """Per generated record: how its export row is spelled (codes into the *_TEXTS lists)."""

    channel_text: Int
    reason_text: Int
    note: Int
    agent: Int  # 0 = self-service, no agent
    updated: Int  # epoch seconds of the version
    updated_missing: Bool
    ts_style: NDArray[np.int8]
    bool_style: NDArray[np.int8]
    defect: NDArray[np.int32]
    file: Int


def _interaction_look(
    rng: np.random.Generator, people: Customers, contacts: Contacts
) -> InteractionLook:
    n = len(contacts.started)
    reason = np.where(contacts.reason < 0, len(REASONS), contacts.reason).astype(np.int64)
    note = reason * 3 + rng.integers(0, 3, n)
    greeted = rng.random(n, dtype=np.float32) < 0.3
    name_code = 1 + people.first_name_code[contacts.customer]
    note = np.where(greeted, len(_BASE_NOTES) * name_code + note, note)
    no_note = rng.random(n, dtype=np.float32) < 0.5
    note = np.where(no_note, len(NOTE_TEXTS) - 1, note)
    agents = np.array([p.agents for p in CHANNEL_PROFILES.values()])
    pool = agents[contacts.channel]
    first_agent = np.concatenate([[1], 1 + np.cumsum(agents)])[contacts.channel]
    agent = np.where(pool > 0, first_agent + rng.integers(0, 1 << 30, n) % np.maximum(pool, 1), 0)
    spelling = _draw(rng, (0.94, 0.03, 0.02, 0.01), n)  # as is, Capitalised, UPPER, padded
    return InteractionLook(
        channel_text=contacts.channel.astype(np.int64) * 4 + spelling,
        reason_text=reason * 3 + _draw(rng, (0.95, 0.03, 0.02), n),
        note=note,
        agent=agent,
        updated=contacts.started + contacts.handle + rng.integers(0, 30 * 60, n),
        updated_missing=rng.random(n, dtype=np.float32) < 0.03,
        ts_style=_draw(rng, TIMESTAMP_STYLE_SHARES, n),
        bool_style=rng.integers(0, len(BOOLEAN_SPELLINGS), n).astype(np.int8),
        defect=np.full(n, -1, dtype=np.int32),
        file=np.zeros(n, dtype=np.int64),
    )


def _interaction_rows(
    rows: Int, people: Customers, contacts: Contacts, look: InteractionLook, id_width: int
) -> pl.DataFrame:
    """The typed export rows of those records (a record may repeat: exact duplicates)."""
    customer = _index(contacts.customer[rows])
    cents = contacts.revenue_cents[rows]
    has_revenue = contacts.has_revenue[rows]
    margin_cents = np.rint(cents * people.margin_rate[contacts.customer[rows]])
    return pl.DataFrame(
        {
            "interaction_id": _ids("I", rows + 1, id_width),
            "customer_id": people.ids.gather(customer),
            "channel": _lookup(CHANNEL_TEXTS, look.channel_text[rows]),
            "started_at": _utc(contacts.started[rows]),
            "handle_seconds": contacts.handle[rows].astype(np.int64),
            "queue_seconds": pl.Series(contacts.queue[rows]).fill_nan(None).cast(pl.Int64),
            "resolved": contacts.resolved[rows],
            "reason": _lookup(REASON_TEXTS, look.reason_text[rows]),
            "revenue": _where(has_revenue, pl.Series(cents / 100.0)),
            "margin": _where(has_revenue, pl.Series(margin_cents / 100.0)),
            "currency": pl.repeat("EUR", len(rows), eager=True, dtype=pl.String),
            "agent_id": _lookup(AGENT_TEXTS, look.agent[rows]),
            "updated_at": _where(~look.updated_missing[rows], _utc(look.updated[rows])),
            "customer_name": people.name.gather(customer),
            "email": people.email.gather(customer),
            "phone": people.phone.gather(customer),
            "notes": _lookup(NOTE_TEXTS, look.note[rows]),
            "_ts_style": look.ts_style[rows],
            "_bool_style": look.bool_style[rows],
            "_defect": look.defect[rows],
            "_file": look.file[rows].astype(np.int32),
        }
    )


def _interactions(
    rng: np.random.Generator, people: Customers, contacts: Contacts, options: GenerateOptions
) -> SourcePlan:
    n = len(contacts.started)
    id_width = max(9, len(str(n)))
    look = _interaction_look(rng, people, contacts)
    count = _file_count(n, options.days, options.formats)
    bounds = _split(n, count)
    look.file = np.repeat(np.arange(count), np.diff(bounds))

    personal = ("customer_name", "email", "phone", "notes")
    contract_names = INTERACTIONS_RAW.names
    files: list[ExportFile] = []
    for i, dialect in enumerate(_file_dialects("interactions", count + 1, options.formats, 0)):
        if i == count:  # the later re-export: every column, plain dialect
            dialect.update(bom=False, messy_header=False, extra=())
            reexport_day = options.end_date + timedelta(days=1)
            files.append(
                ExportFile(
                    "interactions",
                    f"interactions_reexport_{reexport_day:%Y%m%d}",
                    columns=(*contract_names, *personal),
                    **dialect,
                )
            )
            break
        dropped = set()
        if i % 2 == 1:
            dropped.add("margin")  # servio falls back to gross_margin_rate
        if i % 3 == 2:
            dropped.add("currency")
        if i == 1:
            dropped.add("updated_at")  # versions default to started_at
        columns = tuple(c for c in (*contract_names, *personal) if c not in dropped)
        span = _span(contacts.started[bounds[i] : bounds[i + 1]])
        files.append(
            ExportFile(
                "interactions", f"interactions_{i + 1:03d}_{span}", columns=columns, **dialect
            )
        )

    # Defects, exact duplicates and re-exports: a broken record is never copied or re-exported,
    # so every id of a broken row is unique to it.
    messy = round(options.messiness * n)
    look.defect = _assign_defects(rng, files, look.file, messy - messy // 10, INTERACTION_DEFECTS)
    clean = look.defect < 0
    valid_records = np.flatnonzero(clean)
    reexported = np.sort(
        rng.choice(
            valid_records, size=round(options.reexport_rate * len(valid_records)), replace=False
        )
    )
    rows, duplicates = _with_duplicates(rng, valid_records, messy // 10, bounds, look.file)
    reexports = _reexport(
        rng, _interaction_rows(reexported, people, contacts, look, id_width), count
    )
    revenue_cents = int(contacts.revenue_cents[clean & contacts.has_revenue].sum())
    revenue_cents += _cents(reexports["revenue"]) - int(
        contacts.revenue_cents[reexported][contacts.has_revenue[reexported]].sum()
    )
    customers = np.bincount(contacts.customer[clean], minlength=len(people.intensity))

    def rows_of(part: Int) -> Callable[[], pl.DataFrame]:
        return lambda: _interaction_rows(part, people, contacts, look, id_width)

    parts = np.split(rows, np.cumsum(np.bincount(look.file[rows], minlength=count))[:-1])
    exports = [
        (spec, len(part), rows_of(part)) for spec, part in zip(files[:count], parts, strict=True)
    ]
    exports.append((files[-1], reexports.height, lambda: reexports))
    return SourcePlan(
        files=exports,
        defects=INTERACTION_DEFECTS,
        timestamps=("started_at", "updated_at"),
        booleans=("resolved",),
        clean=clean,
        id_width=id_width,
        counts={
            "valid_ids": len(valid_records),
            "bad_rows": n - len(valid_records),
            "duplicate_rows": duplicates,
            "reexport_rows": reexports.height,
            "customers": int(np.count_nonzero(customers)),
        },
        revenue_cents=revenue_cents,
    )


def _cents(money: pl.Series) -> int:
    return int((money.fill_null(0.0) * 100).round(0).cast(pl.Int64).sum())


def _reexport(rng: np.random.Generator, original: pl.DataFrame, file_index: int) -> pl.DataFrame:
    """Later versions: back office closed some open issues, reversed some sales, added a note."""
    n = original.height
    later = pl.lit(pl.Series(rng.integers(3600, 4 * DAY, n)))
    closes = pl.lit(pl.Series(rng.random(n) < 0.4))
    reversed_sale = pl.lit(pl.Series(rng.random(n) < 0.1)) & (pl.col("revenue") > 0)
    return original.with_columns(
        updated_at=pl.coalesce("updated_at", "started_at") + pl.duration(seconds=later),
        resolved=pl.col("resolved") | closes,
        revenue=pl.when(reversed_sale).then(pl.lit(0.0)).otherwise("revenue"),
        margin=pl.when(reversed_sale).then(pl.lit(0.0)).otherwise("margin"),
        notes=pl.concat_str(
            pl.col("notes"), pl.lit("Updated by back office"), separator="\n", ignore_nulls=True
        ),
        _file=pl.lit(file_index, dtype=pl.Int32),
    )


COMMENT_TEXTS = [*POSITIVE_COMMENTS, *NEUTRAL_COMMENTS, *NEGATIVE_COMMENTS, None]


def _surveys(
    rng: np.random.Generator,
    people: Customers,
    contacts: Contacts,
    interactions: SourcePlan,
    catalog: ItemCatalog,
    options: GenerateOptions,
) -> SourcePlan:
    """Responses to a share of the clean contacts; what happened in the contact shapes the answers."""
    asked = np.flatnonzero(
        interactions.clean & (rng.random(len(interactions.clean)) < options.survey_rate)
    )
    delay = np.rint(60 + 2 * 3600 * np.exp(1.3 * rng.standard_normal(len(asked)))).astype(np.int64)
    submitted = contacts.started[asked] + contacts.handle[asked] + delay
    answered = submitted <= _period(options)[1]  # later answers have not arrived yet
    asked, submitted = asked[answered], submitted[answered]
    n = len(asked)
    order = np.argsort((submitted - submitted.min(initial=0)) * max(n, 1) + np.arange(n))
    asked, submitted = asked[order], submitted[order]

    customer = contacts.customer[asked]
    unresolved = ~contacts.resolved[asked]
    queue = np.nan_to_num(contacts.queue[asked], nan=0.0)
    attempt = contacts.attempt[asked]
    queue_penalty = np.minimum(2.5, 0.55 * np.log1p(queue / 120))
    smooth = (~unresolved) & (queue < 300) & (attempt == 0)
    base = 5.6 + people.mood[customer] - 0.3 * attempt + 0.3 * smooth
    expectation_base = people.expectation[customer]

    answers: dict[str, NDArray[np.int8]] = {}  # 0 = not answered
    perception_only = rng.random(n, dtype=np.float32) < PERCEPTION_ONLY_SHARE
    latent_by_dimension: list[Float] = []
    for dimension in catalog.dimensions:
        technical = catalog.side_of(dimension) == "technical"
        latent = base + PERCEPTION_OFFSET.get(dimension, 0.0)
        latent = latent - np.where(unresolved, 2.2 if technical else 0.4, 0.0)
        latent = latent - queue_penalty * (1.0 if dimension == "responsiveness" else 0.25)
        latent = latent + DIMENSION_NOISE * rng.standard_normal(n)
        latent_by_dimension.append(latent)
        expectation = expectation_base + EXPECTATION_OFFSET.get(dimension, 0.0)
        for item in catalog.items_of(dimension):
            answers[item.expectation_column] = _scores(rng, expectation, 0.6, perception_only)
            answers[item.perception_column] = _scores(rng, latent, 0.7, None)
    overall = np.mean(latent_by_dimension, axis=0)
    weights = [NPS_DRIVER_WEIGHTS.get(d, 0.0) for d in catalog.dimensions]
    drivers = np.average(latent_by_dimension, axis=0, weights=weights) if sum(weights) else overall
    noise = rng.standard_normal((3, n))
    nps = _on_scale(2.5 * (drivers - 2.1) + 1.3 * noise[0], 0, 10)
    csat = _on_scale(1 + (overall - 1) * 4 / 6 + 0.45 * noise[1], 1, 5)
    effort = 1.8 + 1.8 * unresolved + 0.6 * queue_penalty + 0.6 * attempt
    ces = _on_scale(effort + 0.8 * noise[2], 1, 7)
    sentiment = np.where(nps >= 9, 0, np.where(nps >= 7, 1, 2))
    nps[rng.random(n, dtype=np.float32) < 0.08] = -1  # -1 = not answered (0 is a score)
    csat[rng.random(n, dtype=np.float32) < 0.12] = 0
    ces[rng.random(n, dtype=np.float32) < 0.15] = 0
    silent = (nps < 0) & (csat == 0) & (ces == 0)
    for item in catalog.items:
        silent &= answers[item.perception_column] == 0
    csat[silent] = 3  # a valid response answers something
    answers.update(nps=nps, csat=csat, ces=ces)

    starts = np.cumsum([0, len(POSITIVE_COMMENTS), len(NEUTRAL_COMMENTS)])
    sizes = np.array([len(POSITIVE_COMMENTS), len(NEUTRAL_COMMENTS), len(NEGATIVE_COMMENTS)])
    comment = starts[sentiment] + rng.integers(0, 1 << 30, n) % sizes[sentiment]
    comment = np.where(rng.random(n, dtype=np.float32) < 0.6, len(COMMENT_TEXTS) - 1, comment)
    wants_call = rng.random(n, dtype=np.float32) < 0.1  # leaves a phone number in the comment
    relationship = rng.random(n, dtype=np.float32) < RELATIONSHIP_SURVEY_SHARE  # about no contact
    ts_style = _draw(rng, TIMESTAMP_STYLE_SHARES, n)

    contract = surveys_raw(catalog)
    count = _file_count(n, options.days, options.formats)
    bounds = _split(n, count)
    file_of_row = np.repeat(np.arange(count), np.diff(bounds))
    files = [
        ExportFile(
            "surveys",
            f"surveys_{i + 1:03d}_{_span(submitted[bounds[i] : bounds[i + 1]])}",
            columns=(*contract.names, "comment"),
            **dialect,
        )
        for i, dialect in enumerate(_file_dialects("surveys", count, options.formats, 1))
    ]
    defects = _survey_defects(catalog)
    messy = round(options.messiness * n)
    defect = _assign_defects(rng, files, file_of_row, messy - messy // 10, defects)
    clean = defect < 0
    rows, duplicates = _with_duplicates(
        rng, np.flatnonzero(clean), messy // 10, bounds, file_of_row
    )

    frame = pl.DataFrame(
        {
            "response_id": _ids("R", rows + 1, max(9, len(str(n)))),
            "customer_id": people.ids.gather(_index(customer[rows])),
            "interaction_id": _where(
                ~relationship[rows], _ids("I", asked[rows] + 1, interactions.id_width)
            ),
            "submitted_at": _utc(submitted[rows]),
            **{column: values[rows] for column, values in answers.items()},
            "comment": _lookup(COMMENT_TEXTS, comment[rows]),
            "_phone": people.phone.gather(_index(customer[rows])),
            "_wants_call": wants_call[rows],
            "_ts_style": ts_style[rows],
            "_defect": defect[rows],
            "_file": file_of_row[rows].astype(np.int32),
        }
    )
    frame = frame.with_columns(
        *(
            pl.when(pl.col(c) > 0).then(pl.col(c)).alias(c)
            for c in (*catalog.answer_columns, "csat", "ces")
        ),
        nps=pl.when(pl.col("nps") >= 0).then(pl.col("nps")),
        comment=pl.when("_wants_call")
        .then(
            pl.concat_str(
                "comment", pl.format("Call me on {}", "_phone"), separator=" ", ignore_nulls=True
            )
        )
        .otherwise("comment"),
    ).drop("_phone", "_wants_call")
    sizes = np.bincount(file_of_row[rows], minlength=count)
    starts = np.concatenate([[0], np.cumsum(sizes)])

    def rows_of(i: int) -> Callable[[], pl.DataFrame]:
        return lambda: frame.slice(int(starts[i]), int(sizes[i]))

    return SourcePlan(
        files=[(spec, int(sizes[i]), rows_of(i)) for i, spec in enumerate(files)],
        defects=defects,
        timestamps=("submitted_at",),
        booleans=(),
        clean=clean,
        id_width=max(9, len(str(n))),
        counts={
            "valid_ids": int(clean.sum()),
            "bad_rows": int((~clean).sum()),
            "duplicate_rows": duplicates,
            "reexport_rows": 0,
        },
    )


def _scores(
    rng: np.random.Generator, centre: Float, noise: float, skipped: Bool | None
) -> NDArray[np.int8]:
    """Answers on the item scale around centre; 0 where not answered."""
    n = len(centre)
    values = _on_scale(
        centre + noise * rng.standard_normal(n, dtype=np.float32), SCALE_MIN, SCALE_MAX
    )
    unanswered = rng.random(n, dtype=np.float32) >= ITEM_ANSWER_RATE
    if skipped is not None:
        unanswered |= skipped
    return np.where(unanswered, 0, values).astype(np.int8)


def _on_scale(values: Any, low: int, high: int) -> NDArray[np.int8]:
    """Rounded to whole points and kept within the scale."""
    return np.clip(np.rint(values), low, high).astype(np.int8)


# ---------------------------------------------------------------------------------------------
# Entry point


def generate(out_dir: Path, options: GenerateOptions) -> GenerateReport:
    """Write a seeded landing zone under out_dir (interactions/, surveys/) and its manifest."""
    started = time.perf_counter()
    options.check()
    out_dir = Path(out_dir)
    _refuse_foreign_files(out_dir, options)
    catalog = load_catalog()
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(options.seed).spawn(4)]
    people = _customers(rngs[0], options.customers)
    contacts = _contacts(rngs[1], people, options)

    def export(
        plan: SourcePlan, spec: ExportFile, build: Callable[[], pl.DataFrame]
    ) -> dict[str, Any]:
        rows = build()
        _write(
            _render(rows, spec, plan.timestamps, plan.booleans, plan.defects),
            out_dir / spec.path,
            spec,
        )
        return _describe(spec, rows, plan.defects)

    # Files are built and written two at a time (most of a writer's work is single-threaded),
    # and the interaction files are written while the surveys are being drawn.
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        interactions = _interactions(rngs[2], people, contacts, options)
        pending = [
            pool.submit(export, interactions, spec, build)
            for spec, count, build in interactions.files
            if count > 0
        ]
        surveys = _surveys(rngs[3], people, contacts, interactions, catalog, options)
        pending += [
            pool.submit(export, surveys, spec, build)
            for spec, count, build in surveys.files
            if count > 0
        ]
        file_notes = [job.result() for job in pending]

    written = [out_dir / note["path"] for note in file_notes]
    report = GenerateReport(
        files=[*written, out_dir / MANIFEST_NAME],
        interaction_rows=interactions.rows,
        survey_rows=surveys.rows,
        valid_interaction_ids=interactions.counts["valid_ids"],
        valid_response_ids=surveys.counts["valid_ids"],
        bad_interaction_rows=interactions.counts["bad_rows"],
        bad_survey_rows=surveys.counts["bad_rows"],
        seconds=0.0,
    )
    manifest = _manifest(options, report, interactions, surveys, file_notes)
    (out_dir / MANIFEST_NAME).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return replace(report, seconds=round(time.perf_counter() - started, 3))


def _refuse_foreign_files(out_dir: Path, options: GenerateOptions) -> None:
    """Never mix with other exports: their ids would collide with the generated ones.

    Re-running the same options over its own output is allowed (it rewrites the same bytes).
    """
    present = {
        p.relative_to(out_dir).as_posix()
        for source in ("interactions", "surveys")
        if (out_dir / source).is_dir()
        for p in (out_dir / source).iterdir()
        if not p.name.startswith(".")
    }
    if not present:
        return
    manifest_path = out_dir / MANIFEST_NAME
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        ours = {entry["path"] for entry in manifest.get("files", [])}
        if manifest.get("options") == _options_json(options) and present <= ours:
            return
    raise FileExistsError(
        f"{out_dir} already holds exports ({sorted(present)[0]}, …) that these options would not "
        "write; generate into an empty directory"
    )


def _options_json(options: GenerateOptions) -> dict[str, Any]:
    return {
        **asdict(options),
        "end_date": options.end_date.isoformat(),
        "formats": list(options.formats),
    }


def _describe(spec: ExportFile, rows: pl.DataFrame, defects: Sequence[Defect]) -> dict[str, Any]:
    kinds = rows.filter(pl.col("_defect") >= 0).group_by("_defect").len().sort("_defect")
    return {
        "path": spec.path,
        "source": spec.source,
        "format": spec.fmt,
        "rows": rows.height,
        "bad_rows": int((rows["_defect"] >= 0).sum()),
        "columns": list(spec.columns) + [name for name, _ in spec.extra],
        "bom": spec.bom,
        "messy_header": spec.messy_header,
        "defects": {defects[int(k)].name: int(c) for k, c in kinds.iter_rows()},
    }


def _manifest(
    options: GenerateOptions,
    report: GenerateReport,
    interactions: SourcePlan,
    surveys: SourcePlan,
    files: list[dict[str, Any]],
) -> dict[str, Any]:
    numbers = {k: v for k, v in asdict(report).items() if k not in ("files", "seconds")}
    return {
        "generator": "servio.generate",
        "options": _options_json(options),
        "report": numbers,
        "ground_truth": {
            "duplicate_interaction_rows": interactions.counts["duplicate_rows"],
            "reexported_interaction_rows": interactions.counts["reexport_rows"],
            "duplicate_survey_rows": surveys.counts["duplicate_rows"],
            "customers_with_valid_interactions": interactions.counts["customers"],
            "revenue_total": _money(interactions.revenue_cents),
            "naive_timestamps": "UTC (servio's default source_timezone)",
        },
        "defects": {
            "interactions": [_defect_note(d) for d in interactions.defects],
            "surveys": [_defect_note(d) for d in surveys.defects],
        },
        "files": files,
    }


def _defect_note(defect: Defect) -> dict[str, str]:
    return {"name": defect.name, "reason": defect.reason, "detail": defect.detail}


def _money(cents: int) -> str:
    """Exact decimal text of an amount in cents."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def summary(report: GenerateReport) -> str:
    """One paragraph for the CLI."""
    return (
        f"{len(report.files)} files, {report.interaction_rows:,} interaction rows "
        f"({report.valid_interaction_ids:,} valid ids, {report.bad_interaction_rows:,} bad), "
        f"{report.survey_rows:,} survey rows ({report.valid_response_ids:,} valid ids, "
        f"{report.bad_survey_rows:,} bad) in {report.seconds:.1f} s"
    )
