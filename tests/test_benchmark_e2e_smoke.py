"""The end-to-end benchmark runs: one untraced and one fully traced configuration, a few
queries each, in fresh processes; and its capacity runs, at a low rate and into a tiny queue. No
timing is asserted (benchmarks are not timed tests); what is asserted is that the figures are
there, that the sinks received every query's events, and that what was not received was
counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _default_delivery():
    """The benchmark measures each sink with the delivery it asks for: a CALLBACKS_DELIVERY
    left in the environment (the plugin tests' session fixture sets one) must not reach the
    benchmark's processes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CALLBACKS_DELIVERY", raising=False)
        yield


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


# -- the capacity benchmark (benchmarks.e2e_capacity_app) ----------------------------------------


def _capacity_run(endpoint: str, out_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.e2e_capacity_app",
            "--config",
            "callbacks:openinference",
            "--warmup",
            "5",
            "--out-dir",
            str(out_dir),
            "--endpoint",
            endpoint,
            *args,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen[str]) -> dict:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def capacity_runs(tmp_path_factory):
    """Two capacity runs side by side (each in its own process, with its own sidecar): a low
    fixed rate with the default queue, and a rate far above what a 32-record queue absorbs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO))  # pytest run as a command has no repository on sys.path
        from benchmarks.otlp_receiver import ReceiverProcess

    receiver = ReceiverProcess()
    try:
        slow = _capacity_run(
            receiver.endpoint, tmp_path_factory.mktemp("slow"), "--rate", "40", "--seconds", "1"
        )
        tiny = _capacity_run(
            receiver.endpoint,
            tmp_path_factory.mktemp("tiny"),
            "--rate",
            "2000",
            "--seconds",
            "3",
            "--until-drops",
            "--queue-size",
            "32",
        )
        yield {"slow": _result(slow), "tiny": _result(tiny), "spans": receiver.spans()}
    finally:
        receiver.close()


def test_capacity_run_at_a_low_rate_delivers_every_record_and_drops_none(capacity_runs):
    slow = capacity_runs["slow"]
    assert slow["warmup_flushed"] and slow["flushed"]
    assert slow["records_per_query"] == 18  # 8 events, each a start and an end, and a trace
    # OpenInference hears every start, end and trace: 18 records per query, all handled.
    assert slow["delivered_per_query"] == {"openinference": 18}
    assert 30 <= slow["queries"] <= 41  # 40 queries/s for a second, paced by the clock
    assert slow["delivered"] == {"openinference": 18 * slow["queries"]}
    assert slow["dropped"] == 0 and slow["lost"] == 0 and slow["warmup_dropped"] == 0
    assert slow["errors"] == {"openinference": 0}
    assert slow["accounted"] and slow["first_drop_s"] is None
    assert slow["samples"] and slow["sustained_qps"] > 0
    # The spans of both runs reached the receiver in another process: 8 per query at least.
    assert capacity_runs["spans"] >= 8 * (slow["queries"] + 5)


def test_capacity_run_counts_every_drop_when_the_queue_is_tiny(capacity_runs):
    tiny = capacity_runs["tiny"]
    assert tiny["queue_size"] == 32
    assert tiny["warmup_dropped"] == 0 and tiny["warmup_flushed"] and tiny["flushed"]
    assert tiny["dropped"] > 0 and tiny["lost"] == 0
    assert tiny["first_drop_s"] is not None  # the sampler saw the drops while producing
    # Nothing silent: every record offered was handled or counted as dropped.
    handled = tiny["delivered"]["openinference"]
    assert handled + tiny["dropped"] == tiny["offered_records"] == 18 * tiny["queries"]
    assert tiny["accounted"]
