"""The overhead benchmark runs end to end with tiny iteration counts and reports every case.

No timing is asserted: only that every case that can run here produced sane figures and that the
report has every row. Cases whose libraries are not importable are skipped by the benchmark itself.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPECTED_CASES = [
    "bare_call",
    "practical_limit",
    "pluggy_raw",
    "bookkeeping_floor",
    "callbacks_0",
    "callbacks_inline",
    "callbacks_redact",
    "callbacks_background",
    "callbacks_builtins",
    "callbacks_sinks",
    "llamaindex_cm_0",
    "llamaindex_cm_1",
    "llamaindex_instrumentation",
    "otel_none",
    "otel_simple",
    "otel_batch",
    "langchain_1",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--out",
            str(out / "RESULTS.md"),
            "--json",
            str(out / "results.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return data, (out / "RESULTS.md").read_text(encoding="utf-8")


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_every_case_either_measured_positive_figures_or_was_skipped_as_unimportable(
    quick_run: tuple[dict[str, Any], str],
) -> None:
    data, _ = quick_run
    assert [c["key"] for c in data["cases"]] == EXPECTED_CASES
    for case in data["cases"]:
        assert case["error"] is None, f"{case['key']} failed: {case['error']}"
        if case["skipped"] is not None:
            assert "not importable" in case["skipped"]
            continue
        m = case["measurement"]
        assert _positive(m["median_ns"]), case
        assert _positive(m["cpu_median_ns"]), case
        assert math.isfinite(m["p99_ns"]) and m["p99_ns"] >= 0, case
        assert m["dropped"] == 0, case


def test_reference_host_and_zero_handler_peer_cases_always_run(
    quick_run: tuple[dict[str, Any], str],
) -> None:
    data, _ = quick_run
    ran = {c["key"] for c in data["cases"] if c["measurement"] is not None}
    assert {"bare_call", "practical_limit", "callbacks_0", "callbacks_inline"} <= ran
    assert {"callbacks_background", "pluggy_raw", "bookkeeping_floor"} <= ran


def test_scaling_figures_are_all_present_and_positive(
    quick_run: tuple[dict[str, Any], str],
) -> None:
    data, _ = quick_run
    assert sorted(int(d) for d in data["depth"]) == [1, 2, 4, 8, 16, 32, 64]
    assert sorted(int(n) for n in data["fan_out"]) == [1, 4, 16]
    for m in [*data["depth"].values(), *data["fan_out"].values()]:
        assert _positive(m["median_ns"])
    assert [t["mode"] for t in data["threads"]] == ["inline", "background"]
    for threads in data["threads"]:
        assert threads["events_ok"], threads
        assert _positive(threads["aggregate_ns"]) and _positive(threads["per_thread_ns"])
    throughput = data["throughput"]
    assert _positive(throughput["pairs_per_s"]) and _positive(throughput["emit_pairs_per_s"])
    assert throughput["delivered"] + throughput["dropped"] > 0
    memory = data["memory"]
    assert _positive(memory["rss_before_mb"]) and _positive(memory["rss_after_mb"])


def test_report_has_a_row_for_every_case_target_and_scaling_point(
    quick_run: tuple[dict[str, Any], str],
) -> None:
    data, report = quick_run
    for case in data["cases"]:
        if case["measurement"] is not None:
            assert f"| {case['label']} | " in report
        else:
            assert f"- {case['label']}: skipped" in report
    for target in data["targets"]:
        assert f"| {target['target']} | " in report
    for depth in data["depth"]:
        assert f"| {depth} | " in report
    for section in (
        "## Targets",
        "## Summary",
        "### Memory",
        "### Sustained throughput",
        "### Two threads",
        "## Machine and versions",
    ):
        assert section in report
