"""The report's SPEC §6 sections (customer value, what drives quality, service levels), from
a small literal lake with the §6 tables published as the pipeline will publish them; and a
fit that did not converge, computed by `value_snapshot`, shown as such and never as numbers.
The sample lake through a real browser: test_report_browser.py."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import vl_convert

from servio.config import Settings
from servio.lake import Lake, TableChange
from servio.report import write_report
from servio.report.value import clv_histogram, model_status, p_alive_points
from servio.schemas.snapshot_tables import value_tables
from servio.value_snapshot import value_snapshot
from tests.test_report import EARLIER, LATEST, _frame, _lake, _specs
from tests.value_frames import contact, interactions, survey_responses

VALUE_CHARTS = ("clv", "p-alive", "drivers", "service-levels", "service-trends")
# customer, p_alive, clv, value_at_risk: C3 and C1 carry the largest values at risk
VALUES = [
    ("C1", 0.30, "120.00", "70.00"),
    ("C2", 0.95, "300.00", "2.50"),
    ("C3", 0.10, "40.00", "90.00"),
    ("C4", None, None, None),  # no purchase
    ("C5", 0.50, "10.00", "0.00"),
]
DRIVERS = [  # dimension, importance, performance, quadrant
    ("tangibles", 0.02, 5.5, "possible_overkill"),
    ("reliability", 0.20, 4.2, "fix_first"),
    ("responsiveness", 0.12, 4.9, "keep_up"),
    ("assurance", 0.03, 4.5, "low_priority"),
    ("empathy", 0.05, 5.6, "possible_overkill"),
]


def _value_changes(settings: Settings, as_of: date) -> list[TableChange]:
    tables = value_tables(settings.value_horizon_days)
    customer_value = _frame(
        tables["customer_value"],
        [
            {
                "as_of_date": as_of,
                "customer_id": c,
                "x": None if p is None else 2,
                "p_alive": p,
                "clv": None if clv is None else Decimal(clv),
                "value_at_risk": None if risk is None else Decimal(risk),
            }
            for c, p, clv, risk in VALUES
        ],
    )
    value_model = _frame(
        tables["value_model"],
        [
            {"as_of_date": as_of, "model": "bg_nbd", "r": 0.25, "alpha": 4.4, "a": 0.79,
             "b": 2.43, "n_customers": 4, "log_likelihood": -12.5, "converged": True},
            {"as_of_date": as_of, "model": "gamma_gamma", "p": 6.25, "q": 3.74, "gamma": 15.44,
             "n_customers": 3, "log_likelihood": -8.0, "converged": True},
        ],
    )  # fmt: skip
    drivers = _frame(
        tables["quality_drivers"],
        [
            {"as_of_date": as_of, "dimension": d, "importance": i, "performance": p,
             "mean_gap": p - 5.0, "n_responses": 40, "quadrant": q}
            for d, i, p, q in DRIVERS
        ],
    )  # fmt: skip
    return [
        TableChange(tables["customer_value"], {as_of: customer_value}),
        TableChange(tables["value_model"], {as_of: value_model}),
        TableChange(tables["quality_drivers"], {as_of: drivers}),
        _service_change(settings, as_of, breach=0.4),
    ]


def _service_change(settings: Settings, as_of: date, breach: float) -> TableChange:
    table = value_tables(settings.value_horizon_days)["service_levels"]
    rows = [
        {"as_of_date": as_of, "channel": channel, "n_interactions": 10, "sla_breach_rate": rate,
         "p50_queue_seconds": 20.0, "p90_queue_seconds": 90.0, "fcr_rate": 0.7, "nps": 12.0,
         "csat_mean": 4.1, "ces_mean": 2.5}
        for channel, rate in (("phone", breach), ("chat", breach / 2), ("all", breach * 0.75))
    ]  # fmt: skip
    return TableChange(table, {as_of: _frame(table, rows)})


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, Settings]:
    lake, settings = _lake(tmp_path_factory.mktemp("value-report"), (EARLIER, LATEST))
    # LATEST has every §6 table; EARLIER only service_levels (for the trend).
    lake.publish(
        "value", [*_value_changes(settings, LATEST), _service_change(settings, EARLIER, 0.5)]
    )
    return lake, settings


@pytest.fixture(scope="module")
def page(lake: tuple[Lake, Settings], tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("value-page") / "report.html"
    return write_report(*lake, out).read_text(encoding="utf-8")


def test_every_value_chart_is_on_the_page_and_draws(page: str) -> None:
    specs = _specs(page)
    for key in VALUE_CHARTS:
        assert f'id="vis-{key}"' in page, key
        svg = vl_convert.vegalite_to_svg(specs[key])
        assert "<svg" in svg and "<path" in svg, key


def test_value_at_risk_lists_the_customers_by_id_largest_first(page: str) -> None:
    table = page.split('id="value-at-risk-table"', 1)[1].split("</table>", 1)[0]
    keys = re.findall(r'<tr data-key="([^"]+)">', table)
    assert keys == ["C3", "C1", "C2", "C5"]  # 90, 70, 2.50, 0.00; C4 has none
    assert 'data-value="90.00">€90.00</td>' in table


def test_the_fitted_models_are_shown_with_their_parameters(page: str) -> None:
    card = page.split('id="value-models"', 1)[1].split("</figure>", 1)[0]
    assert "r = 0.25, α = 4.4, a = 0.79, b = 2.43" in card
    assert "p = 6.25, q = 3.74, γ = 15.44" in card
    assert "did not converge" not in page


def test_the_importance_performance_matrix_names_the_quadrants(page: str) -> None:
    assert "Fix first: reliability." in page
    table = page.split('id="drivers-table"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<tr data-key="([^"]+)">', table) == [d for d, *_ in DRIVERS]
    assert "possible overkill" in table and "low priority" in table
    points = _values(_specs(page)["drivers"])
    assert {p["dimension"]: p["quadrant"] for p in points if "dimension" in p} == {
        d: q for d, _, _, q in DRIVERS
    }


def test_service_levels_per_channel_and_across_snapshots(page: str) -> None:
    specs = _specs(page)
    now = {v["channel"]: v["sla_breach_rate"] for v in _values(specs["service-levels"])}
    assert now == {"phone": 0.4, "chat": 0.2, "all": pytest.approx(0.3)}
    trend = [v for v in _values(specs["service-trends"]) if "sla_breach_rate" in v]
    assert sorted((v["as_of_date"], v["channel"]) for v in trend) == sorted(
        (d.isoformat(), c) for d in (EARLIER, LATEST) for c in ("phone", "chat", "all")
    )
    assert "NPS +12, CSAT 4.10, effort 2.50" in page


def test_a_snapshot_without_the_value_tables_says_so(
    lake: tuple[Lake, Settings], tmp_path: Path
) -> None:
    page = write_report(*lake, tmp_path / "r.html", as_of=EARLIER).read_text(encoding="utf-8")
    assert "customer_value has no rows for 2026-10-31: not computed for this snapshot" in page
    assert "quality_drivers has no rows for 2026-10-31: not computed for this snapshot" in page
    assert not set(VALUE_CHARTS[:3]) & set(_specs(page))
    assert 'id="vis-service-levels"' in page  # published for that date
    assert "Only one snapshot up to 2026-10-31 has service levels" in page


def test_an_unconverged_fit_is_named_and_none_of_its_numbers_shown(tmp_path: Path) -> None:
    """Every customer buys once or twice a hundred days apart: BG/NBD and Gamma-Gamma both
    end at the edge of their search boxes (value_snapshot: converged = false)."""
    lake, settings = _lake(tmp_path, (LATEST,))
    contacts = [
        contact(f"C{i}", days_ago=d, revenue="50.00")
        for i in range(30)
        for d in ([5, 100] if i % 2 else [40])
    ]
    snapshot = value_snapshot(interactions(*contacts), survey_responses(), LATEST, settings)
    assert len(snapshot.warnings()) == 2, "these data no longer fail to converge: pick others"
    tables = value_tables(settings.value_horizon_days)
    lake.publish(
        "unconverged",
        [TableChange(tables[n], {LATEST: f}) for n, f in snapshot.tables().items()],
    )
    page = write_report(lake, settings, tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="unconverged-bg_nbd"' in page and 'id="unconverged-gamma_gamma"' in page
    assert "BG/NBD (purchases, dropout) did not converge" in page
    assert "p_alive, expected purchases, CLV and value at risk were not computed" in page
    card = page.split('id="value-models"', 1)[1].split("</figure>", 1)[0]
    assert card.count("not converged: not used") == 2
    for fit in snapshot.fits:  # not one parameter or log-likelihood of either fit
        for number in [*fit.params.values(), fit.log_likelihood]:
            if number is not None and number == number:
                assert f"{number:.4g}" not in card and f"{number:,.1f}" not in card
    assert not {"clv", "p-alive"} & set(_specs(page))
    assert 'id="value-at-risk"' not in page


def test_values_without_their_model_are_not_shown(tmp_path: Path) -> None:
    lake, settings = _lake(tmp_path, (LATEST,))
    lake.publish("value-only", _value_changes(settings, LATEST)[:1])  # customer_value alone
    page = write_report(lake, settings, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "customer_value has rows for 2026-11-26 but value_model has none" in page
    assert not {"clv", "p-alive"} & set(_specs(page))
    retain = page.split('id="customers-retain_now-table"', 1)[1].split("</table>", 1)[0]
    assert "p alive" not in retain  # nor in the customer lists


def test_clv_histogram_counts_everyone_and_keeps_outliers_in_the_last_bar() -> None:
    frame = pl.DataFrame({"clv": [float(v) for v in range(100)] + [10_000.0, None]})
    bars = clv_histogram(frame.with_columns(pl.col("clv").cast(pl.Decimal(18, 2))), bins=10)
    assert bars["customers"].sum() == 101  # the null is no customer with a CLV
    assert bars["is_top"].to_list() == [False] * 9 + [True]
    assert bars["bin_end"].max() < 10_000  # the outlier does not stretch the axis
    assert clv_histogram(pl.DataFrame({"clv": [None]}, schema={"clv": pl.Float64})).is_empty()


def test_p_alive_points_thin_to_every_kth_customer_by_id() -> None:
    n = 25
    ids = [f"C{i:03d}" for i in range(n)]
    value = pl.DataFrame({"customer_id": ids, "p_alive": [0.5] * n})
    profit = pl.DataFrame({"customer_id": ids, "profit": [1.0] * n})
    segments = pl.DataFrame({"customer_id": ids, "action": ["grow"] * n})
    points, scored = p_alive_points(value, profit, segments, points=10)
    assert scored == n and points["customer_id"].to_list() == ids[::3]


def test_model_status_drops_the_numbers_of_an_unconverged_fit() -> None:
    model = pl.DataFrame(
        {"model": ["gamma_gamma", "bg_nbd"], "r": [None, 9.0], "alpha": [None, 1.0],
         "a": [None, 1.0], "b": [None, 1.0], "p": [2.0, None], "q": [3.0, None],
         "gamma": [4.0, None], "n_customers": [3, 5], "log_likelihood": [-1.0, -2.0],
         "converged": [True, False]}
    )  # fmt: skip
    bg, gg = model_status(model)
    assert (bg.model, bg.params, bg.log_likelihood) == ("bg_nbd", {}, None)
    assert gg.params == {"p": 2.0, "q": 3.0, "gamma": 4.0}


def _values(spec: dict) -> list[dict]:
    return [v for values in spec.get("datasets", {}).values() for v in values]
