"""The run report as a person sees it: generated exports → pipeline (no Prefect) → report,
opened offline in headless Chromium through the DevTools protocol; every chart must draw.

Needs Debian's `chromium` (`apt-get install -y chromium`); skipped when it is absent.
`python tests/test_report_browser.py docs/report.png` refreshes the README screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",  # the chosen port is written to DevToolsActivePort
)
PAGE_WIDTH = 1280
AS_OF_DATES = (date(2026, 10, 31), date(2026, 11, 26))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="headless Chromium not installed (apt-get install -y chromium): the report's "
        "charts were not checked in a browser",
    ),
]


def build_sample_lake(root: Path) -> tuple[Any, Any]:
    """Generated exports ingested and snapshotted for two as-of dates, without Prefect, with
    the sequence `servio run` uses: each snapshot publishes its SPEC §6 tables beside the
    customer_* tables. Built once per test process, copied for each caller (`tests.lakes`)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from servio.lake import Lake
    from servio.schemas.snapshot_tables import value_tables
    from servio.steps import sequence
    from servio.tools.generate import GenerateOptions, generate
    from tests import lakes
    from tests.runs import run

    def build(where: Path) -> None:
        # Seed 7: both snapshots' BG/NBD fits converge (seed 5 gives none), so the customer
        # value charts draw; an unconverged fit's page is checked in test_report.py.
        generate(where / "raw", GenerateOptions(customers=400, days=90, seed=7))
        settings = lakes.configure(where)
        first, *others = AS_OF_DATES
        run(settings, plan=sequence.Plan(snapshot=first, data_docs=False))
        for as_of in others:
            run(settings, plan=sequence.Plan(ingest=None, snapshot=as_of, data_docs=False))

    settings = lakes.copy_of("sample", build, root)
    lake = Lake(settings.curated_root)
    for table in value_tables(settings.value_horizon_days).values():
        published = sorted(lake.partitions(table))
        assert published == [d.isoformat() for d in AS_OF_DATES], (table.name, published)
    return lake, settings


@dataclass
class Rendered:
    state: str  # the page's data-charts: drawn / failed / pending
    charts: dict[str, int]  # chart container id → SVG marks drawn inside it
    data_marks: dict[str, int]  # chart container id → data marks (not axes) with an area
    probes: dict[str, Any]  # what each probe expression evaluated to once the charts drew
    problems: list[str]  # console errors and warnings, uncaught exceptions
    requests: list[str]  # every URL the page asked for
    screenshot: bytes = field(repr=False)


class DevTools:
    """The few DevTools-protocol calls the test needs, over the browser's websocket."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"id": next(self.ids), "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv(timeout=60))
            if reply.get("id") != message["id"]:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return dict(reply["result"])

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        return result["result"].get("value")


def _problems(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(str(params["exceptionDetails"].get("exception", {}).get("description")))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning"):
            found.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            found.append(params["entry"]["text"])
    return found


@contextlib.contextmanager
def _chromium() -> Iterator[DevTools]:
    """A headless Chromium with a fresh profile, connected over its DevTools websocket."""
    from websockets.sync.client import connect

    profile = tempfile.mkdtemp(prefix="servio-chromium-")
    # Its own session, so that stopping it stops its helper processes too: one of them may
    # still be writing into the profile after the browser process itself has exited.
    browser = subprocess.Popen(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while len(lines := _read_lines(port_file)) < 2:
            if browser.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start (exit code {browser.poll()})")
            time.sleep(0.1)
        port, path = lines[0], lines[1]
        with connect(f"ws://127.0.0.1:{port}{path}", proxy=None, max_size=None) as socket:
            yield DevTools(socket)
    finally:
        _stop_group(browser)
        _remove_profile(Path(profile))


def _stop_group(browser: subprocess.Popen[bytes]) -> None:
    """Terminate the browser's process group, then kill what is left of it after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(browser.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        browser.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(browser.pid, signal.SIGKILL)
    browser.wait()


def _remove_profile(profile: Path) -> None:
    """The profile, removed once the last helper has let go of it (a killed helper's files can
    still appear for a moment); a profile that is still busy after 10 s is an error."""
    deadline = time.monotonic() + 10
    while True:
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def render(
    page: Path,
    width: int = PAGE_WIDTH,
    timeout: float = 60.0,
    probes: dict[str, str] | None = None,
) -> Rendered:
    """Open `page` from disk, wait until its charts settle, evaluate the `probes` (name →
    JavaScript expression), and take a full-page screenshot."""
    with _chromium() as tools:
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            tools.call(f"{domain}.enable", session)
        tools.call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        tools.call("Page.navigate", session, url=page.resolve().as_uri())
        deadline = time.monotonic() + timeout
        state = "pending"
        while time.monotonic() < deadline:
            state = tools.evaluate(session, "document.body && document.body.dataset.charts")
            if state in ("drawn", "failed"):
                break
            time.sleep(0.2)
        charts = tools.evaluate(
            session,
            """Object.fromEntries([...document.querySelectorAll(".vis")].map((e) => [e.id,
               e.querySelectorAll("svg path, svg rect, svg line, svg text").length]))""",
        )
        # A data mark drawn with no area (a bar 0 px wide) is not drawn: count those that have one.
        data_marks = tools.evaluate(
            session,
            """Object.fromEntries([...document.querySelectorAll(".vis")].map((e) => [e.id,
               [...e.querySelectorAll("[role=graphics-symbol]")].filter((m) => {
                 const box = m.getBBox(); return box.width > 0 && box.height > 0; }).length]))""",
        )
        found = {name: tools.evaluate(session, js) for name, js in (probes or {}).items()}
        height = tools.evaluate(session, "document.documentElement.scrollHeight")
        shot = tools.call(
            "Page.captureScreenshot",
            session,
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        requests = [
            e["params"]["request"]["url"]
            for e in tools.events
            if e.get("method") == "Network.requestWillBeSent"
        ]
        return Rendered(
            state=str(state),
            charts=dict(charts or {}),
            data_marks=dict(data_marks or {}),
            probes=found,
            problems=_problems(tools.events),
            requests=requests,
            screenshot=base64.b64decode(shot["data"]),
        )


PROBES = {
    "sections": "[...document.querySelectorAll('section')].map((s) => s.id)",
    # customer ids as a person sees them: rendered text of rows the browser shows
    "retain_now": """[...document.querySelectorAll('#customers-retain_now-table tr[data-key]')]
        .filter((r) => r.checkVisibility()).map((r) => r.querySelector('td.id').innerText)""",
    "value_at_risk": """[...document.querySelectorAll('#value-at-risk-table tr[data-key]')]
        .filter((r) => r.checkVisibility()).map((r) => r.querySelector('td.id').innerText)""",
    "drivers": """[...document.querySelectorAll('#drivers-table tr[data-key]')]
        .filter((r) => r.checkVisibility()).map((r) => r.dataset.key)""",
    # the per-cell lists are folded: open them, count the rows shown, fold them again
    "cell_rows": """(() => {
        const folds = [...document.querySelectorAll('#customers details')];
        const hidden = [...document.querySelectorAll('#customers details tr[data-key]')]
          .filter((r) => r.checkVisibility()).length;
        folds.forEach((d) => { d.open = true; });
        const shown = [...document.querySelectorAll('#customers details tr[data-key]')]
          .filter((r) => r.checkVisibility()).length;
        folds.forEach((d) => { d.open = false; });
        return [folds.length, hidden, shown]; })()""",
}


@dataclass(frozen=True)
class Sample:
    lake: Any
    settings: Any
    page: Path


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    from servio.report import write_report

    root = tmp_path_factory.mktemp("report-browser")
    lake, settings = build_sample_lake(root)
    return Sample(lake, settings, write_report(lake, settings, root / "report.html"))


@pytest.fixture(scope="module")
def rendered(sample: Sample) -> tuple[Path, Rendered]:
    return sample.page, render(sample.page, probes=PROBES)


def test_every_chart_draws_in_the_browser(rendered: tuple[Path, Rendered]) -> None:
    _, result = rendered
    expected = {
        "vis-whale",
        "vis-profit-segment",
        "vis-kaplan",
        "vis-rfm",
        "vis-gap-dimension",
        "vis-gap-side",
        "vis-action-matrix",
        "vis-clv",  # SPEC §6, published beside the snapshots
        "vis-p-alive",
        "vis-drivers",
        "vis-service-levels",
        "vis-service-trends",
        "vis-trends",  # two snapshots were published
        "vis-quarantine-reasons",  # the generated exports are deliberately messy
    }
    assert result.state == "drawn", result.problems
    assert set(result.charts) == expected
    empty = {chart for chart, marks in result.charts.items() if marks < 10}
    assert not empty, f"charts without drawn marks: {empty}"
    no_data = {chart for chart, marks in result.data_marks.items() if marks < 3}
    assert not no_data, f"charts whose data marks have no area: {no_data}"


def test_the_new_sections_and_customer_lists_are_shown(
    sample: Sample, rendered: tuple[Path, Rendered]
) -> None:
    from servio.report.data import read_report_data

    _, result = rendered
    data = read_report_data(sample.lake, sample.settings)
    assert result.probes["sections"] == [
        "profit",
        "service",
        "actions",
        "customers",
        "value",
        "drivers",
        "service-levels",
        "trends",
        "data-quality",
    ]
    retain = data.customers.filter(pl.col("action") == "retain_now")
    assert result.probes["retain_now"] == retain["customer_id"].head(10).to_list()
    assert len(result.probes["retain_now"]) == min(10, retain.height) > 0
    at_risk = data.snapshot.value.customer_value.sort(
        ["value_at_risk", "customer_id"], descending=[True, False], nulls_last=True
    )
    assert result.probes["value_at_risk"] == at_risk["customer_id"].head(10).to_list()
    assert result.probes["drivers"] == list(sample.settings.catalog.dimensions)
    folds, hidden, shown = result.probes["cell_rows"]
    assert folds >= 3 and hidden == 0 and shown > 10  # folded until opened


def test_the_page_logs_no_error_or_warning(rendered: tuple[Path, Rendered]) -> None:
    _, result = rendered
    assert result.problems == []


def test_the_page_fetches_nothing_but_itself(rendered: tuple[Path, Rendered]) -> None:
    page, result = rendered
    assert result.requests == [page.resolve().as_uri()]


def test_a_full_page_screenshot_can_be_taken(rendered: tuple[Path, Rendered]) -> None:
    _, result = rendered
    png = result.screenshot
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == PAGE_WIDTH and height > 2000


if __name__ == "__main__":  # refresh the screenshot: python tests/test_report_browser.py OUT.png
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from servio.report import write_report

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png")
    with tempfile.TemporaryDirectory() as tmp:
        lake, settings = build_sample_lake(Path(tmp))
        result = render(write_report(lake, settings, Path(tmp) / "report.html"))
    out.write_bytes(result.screenshot)
    print(f"{out}: {result.state}, {len(result.charts)} charts, problems: {result.problems}")
