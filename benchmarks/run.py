"""Run the whole benchmark and write the report: ``python -m benchmarks.run [--quick]``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from . import cases_callbacks, cases_peers, cases_reference, scaling
from .case import Case, unavailable
from .machine import describe_machine, versions
from .profiling import profile_case
from .report import render
from .results import CaseResult, Results, check_targets
from .timing import Plan, measure

__all__ = ["CASES", "main", "run"]

CASES: list[Case] = [*cases_reference.CASES, *cases_callbacks.CASES, *cases_peers.CASES]
"""Every row of the main table, in report order."""

_FULL = Plan()
_HEAVY = Plan(repeats=8, min_repeats=4, warmup_s=0.0, shots=1000, max_case_s=20.0)
_SCALING = Plan(repeats=10, min_repeats=5, warmup_s=0.05, shots=1000, max_case_s=2.0)
_QUICK = Plan(repeats=3, min_repeats=3, warmup_s=0.0, shots=50, fixed_batch=50, max_case_s=1.0)
_HEAVY_MAX_BATCH = 500
# A target missed by one of these cases gets a cProfile breakdown in the report.
_PROFILED = {
    "0 plugins": "callbacks_0",
    "1 inline": "callbacks_inline",
    "1 background": "callbacks_background",
    "wandb + aim": "callbacks_sinks",
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _preload() -> None:
    # Every case then runs with the same heap, so the garbage collector (whose full collections
    # traverse every object) costs each case the same, as in an application with all loaded.
    for case in CASES:
        unavailable(case)


def _run_case(case: Case, plan: Plan) -> CaseResult:
    result = CaseResult(case.key, case.label, case.group, case.note)
    result.skipped = unavailable(case)
    if result.skipped is not None:
        _log(f"  {case.label}: skipped ({result.skipped})")
        return result
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix=f"bench-{case.key}-") as tmp:
            fixture = case.setup(Path(tmp))
            try:
                if case.heavy:
                    fixture.max_batch = min(fixture.max_batch or _HEAVY_MAX_BATCH, _HEAVY_MAX_BATCH)
                result.measurement = measure(case.stmt, fixture, plan)
            finally:
                if fixture.close is not None:
                    fixture.close()
    except Exception as error:
        result.error = f"{type(error).__name__}: {error}"
        _log(traceback.format_exc())
    m = result.measurement
    figures = f"{m.median_ns:,.0f} ns median, {m.p99_ns:,.0f} ns p99" if m else result.error
    _log(f"  {case.label}: {figures} ({time.perf_counter() - started:.1f} s)")
    return result


def run(quick: bool = False, out: Path | None = None, json_out: Path | None = None) -> Results:
    """Run every case and the scaling measurements; write the report to ``out`` (and every figure
    to ``json_out``) when given. ``quick`` uses tiny iteration counts (a smoke run)."""
    started = time.perf_counter()
    results = Results(
        quick=quick,
        started=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=describe_machine(),
        versions=versions(),
    )
    _preload()
    _log("event pairs:")
    for case in CASES:
        plan = _QUICK if quick else (_HEAVY if case.heavy else _FULL)
        results.cases.append(_run_case(case, plan))

    scaling_plan = _QUICK if quick else _SCALING
    _log("scaling: nesting depth, fan-out")
    results.depth = scaling.by_depth(scaling_plan)
    results.fan_out = scaling.by_fan_out(scaling_plan)
    _log("scaling: two threads")
    pairs, runs = (100, 2) if quick else (2000, 7)
    results.threads = [scaling.two_threads(mode, pairs, runs) for mode in ("inline", "background")]
    _log("scaling: throughput")
    results.throughput = scaling.throughput(5_000 if quick else 300_000)
    _log("scaling: memory")
    results.memory = scaling.memory_growth(10_000 if quick else 1_000_000)

    if not quick:
        missed = [t.target for t in check_targets(results) if t.met is False]
        for prefix, key in _PROFILED.items():
            case = next(c for c in CASES if c.key == key)
            ran = results.case(key)
            if ran is None or ran.measurement is None:
                continue
            if any(prefix in target for target in missed):
                _log(f"profiling {case.label}")
                results.profiles[key] = profile_case(case, 2_000 if case.heavy else 50_000)

    results.duration_s = time.perf_counter() - started
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(results), encoding="utf-8")
        _log(f"wrote {out}")
    if json_out is not None:
        json_out.write_text(json.dumps(results.to_json(), indent=2, default=str), encoding="utf-8")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: run, print the targets, write the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny iteration counts (smoke run)")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/RESULTS.md"), help="Markdown report path"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every figure as JSON")
    args = parser.parse_args(argv)
    results = run(quick=args.quick, out=args.out, json_out=args.json)
    for target in check_targets(results):
        status = {True: "met", False: "MISSED", None: "not run"}[target.met]
        print(f"{status:8s} {target.target}: {target.measured}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
