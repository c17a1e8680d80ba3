"""Contact channels and what servio assumes about each when the configuration is silent:
the cost to serve a contact (SPEC §2 `cost_to_serve`) and the queue target (SPEC §6 `sla`).
Plain data: `servio.config` validates overrides of it, transforms take it as parameters."""

from __future__ import annotations

from dataclasses import dataclass

CHANNELS = ("phone", "chat", "email", "visit", "web")


@dataclass(frozen=True)
class ChannelRate:
    """Cost of one contact on a channel, in the reporting currency."""

    per_contact: float
    per_minute: float  # per handled minute


DEFAULT_RATES: dict[str, ChannelRate] = {
    "phone": ChannelRate(per_contact=0.50, per_minute=0.90),
    "chat": ChannelRate(per_contact=0.30, per_minute=0.60),
    "email": ChannelRate(per_contact=0.40, per_minute=0.50),
    "visit": ChannelRate(per_contact=2.00, per_minute=1.20),
    "web": ChannelRate(per_contact=0.05, per_minute=0.00),
}
# Queue targets in seconds; None = the channel has no target (no service_levels row).
DEFAULT_SLA: dict[str, float | None] = {
    "phone": 60.0,
    "chat": 30.0,
    "email": 86_400.0,
    "visit": 600.0,
    "web": None,
}
