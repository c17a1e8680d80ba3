"""The benchmark runs end to end at a tiny scale and servio agrees with the DuckDB SQL peer.

No timing is asserted: only that every stage ran and the comparison found no difference.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import run

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e


def test_benchmark_runs_and_servio_agrees_with_the_peer(tmp_path: Path) -> None:
    results = tmp_path / "results"

    exit_code = run.main(
        [
            "--scale",
            "5k",
            "--workdir",
            str(tmp_path / "work"),
            "--results-dir",
            str(results),
            "--no-prefect",
            "--settle",
            "0",  # the pause between stages steadies timings; none is asserted here
        ]
    )

    [report] = results.glob("*-5k.json")
    result = json.loads(report.read_text())
    differences = {
        t["table"]: t["differing_columns"] for t in result["comparison"]["tables"] if not t["equal"]
    }
    assert differences == {}
    assert result["valid"] is True
    assert exit_code == 0
    assert {t["table"] for t in result["comparison"]["tables"]} == {
        "interactions",
        "survey_responses",
        "customer_quality",
        "customer_profitability",
        "customer_segments",
    }
    assert all(t["rows_servio"] > 0 for t in result["comparison"]["tables"])
    assert (results / report.name.replace(".json", ".md")).exists()

    # `--servio-only` (for scales whose peer would not fit in memory) summarises servio's
    # stages alone: no peer ratios or goals, nothing compared, and it says so.
    stages = {name: result["stages"][name] for name in ("servio_ingest", "servio_snapshots")}
    alone = run.summarise(
        "5k", 5000, result["machine"], result["input"], stages, {"valid": None, "tables": []}
    )
    assert alone["valid"] is None
    assert set(alone["goals"]) == {"peak_rss_le_4GiB"}
    assert not any("peer" in name or "floor" in name for name in alone["ratios"])
    assert "NOT COMPARED" in run.markdown(alone)


def test_scale_labels() -> None:
    assert run.parse_scale("20k") == 20_000
    assert run.parse_scale("1M") == 1_000_000
    assert run.parse_scale("100M") == 100_000_000
