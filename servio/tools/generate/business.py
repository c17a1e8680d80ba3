"""The shape of the business: channels, reasons, customers, and how their contacts are drawn."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from servio.schemas.channels import CHANNELS
from servio.tools.generate.options import DAY, Bool, Float, GenerateOptions, Int
from servio.tools.generate.values import _ids

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
# Customers who leave (SPEC §6 customer_value: p_alive must see them, and the BG/NBD fit must find
# a spread of dropout to estimate): each customer stays an exponential time whose rate is drawn
# per customer from a Gamma (shape LEAVE_RATE_SHAPE, mean LEAVE_RATE_MEAN per period), so some
# leave early and most stay. Their issues arrive over the days they stay, at a rate raised so
# each customer's expected count is what it would be without leaving: the volume per customer
# (`interactions_per_customer`) does not depend on the churn. Measured: with these values the
# default sample's fit converges for seeds 0–40 and 42 (a few other pairs failed for one seed).
LEAVE_RATE_SHAPE = 2.0
LEAVE_RATE_MEAN = 1.5
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
    leave_rate = rng.gamma(  # per day
        LEAVE_RATE_SHAPE, LEAVE_RATE_MEAN / LEAVE_RATE_SHAPE / options.days, len(people.intensity)
    )
    active_days = np.minimum(rng.exponential(1 / leave_rate), options.days)
    expected_active_days = -np.expm1(-leave_rate * options.days) / leave_rate
    issues = rng.poisson(
        issues_per_customer * people.intensity * active_days / expected_active_days
    )
    customer = np.repeat(np.arange(len(issues), dtype=np.int32), issues)
    n = len(customer)
    business_hours = rng.normal(13.5 * 3600, 3.2 * 3600, n)
    at_night = (
        (rng.random(n, dtype=np.float32) >= 0.85) | (business_hours < 0) | (business_hours >= DAY)
    )
    time_of_day = np.where(at_night, rng.uniform(0, DAY, n), business_hours)
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
