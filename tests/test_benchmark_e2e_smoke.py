"""The end-to-end benchmark runs: one untraced and one fully traced configuration, a few
queries each, in fresh processes. No timing is asserted (benchmarks are not timed tests); what
is asserted is that the figures are there and that the sinks received every query's events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_end_to_end_benchmark_reports_every_figure_and_the_sinks_get_every_event(tmp_path):
    report = tmp_path / "e2e.md"
    data = tmp_path / "e2e.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.e2e",
            "--queries",
            "8",
            "--warmup",
            "2",
            "--rounds",
            "1",
            "--config",
            "callbacks:wandb+aim+openinference",
            "--out",
            str(report),
            "--json",
            str(data),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(data.read_text())["results"]
    assert set(results) == {"untraced", "callbacks:wandb+aim+openinference"}
    traced = results["callbacks:wandb+aim+openinference"]
    assert len(traced["latencies_s"]) == 8 and traced["cpu_s"] > 0
    sinks = traced["sinks"]
    assert sinks["flushed"] is True
    assert set(sinks["delivered"]) == {"wandb", "aim", "openinference"}
    assert all(n == 0 for n in sinks["dropped"].values()), sinks
    assert all(n == 0 for n in sinks["errors"].values()), sinks
    assert all(n == 0 for n in sinks["lost"].values()), sinks  # the sinks run in the sidecar
    assert min(sinks["measured"].values()) > 8 * 5  # what the measured queries delivered
    assert sinks["host"]["abandoned"] == 0 and sinks["host"]["unmatched_ends"] == 0
    # Every span the plugin made reached the OTLP receiver (another process counts them).
    created = sinks["plugin"]["openinference"]["spans_created"]
    assert created > 8 * 5 and traced["spans_received"] == created
    text = report.read_text()
    assert "| untraced |" in text and "| callbacks:wandb+aim+openinference |" in text
