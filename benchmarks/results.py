"""What one benchmark run produced, and the targets it is judged against."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .profiling import ProfileRow
from .scaling import MemoryResult, ThreadsResult, ThroughputResult
from .timing import Measurement

__all__ = ["CaseResult", "Results", "TargetCheck", "check_targets"]


@dataclass
class CaseResult:
    """One row of the main table: measured, skipped (with the reason) or failed."""

    key: str
    label: str
    group: str
    note: str = ""
    measurement: Measurement | None = None
    skipped: str | None = None
    error: str | None = None


@dataclass
class Results:
    """Everything one run measured."""

    quick: bool
    started: str
    duration_s: float = 0.0
    machine: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)
    depth: dict[int, Measurement] = field(default_factory=dict)
    fan_out: dict[int, Measurement] = field(default_factory=dict)
    threads: list[ThreadsResult] = field(default_factory=list)
    throughput: ThroughputResult | None = None
    memory: MemoryResult | None = None
    profiles: dict[str, list[ProfileRow]] = field(default_factory=dict)

    def median(self, key: str) -> float | None:
        """Median ns per pair of case ``key``, if it ran."""
        for case in self.cases:
            if case.key == key and case.measurement is not None:
                return case.measurement.median_ns
        return None

    def case(self, key: str) -> CaseResult | None:
        """The row for case ``key``."""
        return next((c for c in self.cases if c.key == key), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every figure."""
        data = dataclasses.asdict(self)
        data["targets"] = [dataclasses.asdict(t) for t in check_targets(self)]
        return data


@dataclass
class TargetCheck:
    """One target, the figure measured for it, and whether it was met."""

    target: str
    measured: str
    met: bool | None
    """``None`` when the case it depends on did not run."""


def _ns(value: float | None) -> str:
    return "not run" if value is None else f"{value:,.0f} ns"


def check_targets(results: Results) -> list[TargetCheck]:
    """Judge ``results`` against the project's overhead targets."""
    zero = results.median("callbacks_0")
    inline = results.median("callbacks_inline")
    background = results.median("callbacks_background")
    sinks = results.case("callbacks_sinks")
    langchain = results.median("langchain_1")
    llama = results.median("llamaindex_cm_1")
    checks = [
        TargetCheck("0 plugins ≤ 500 ns", _ns(zero), None if zero is None else zero <= 500),
        TargetCheck(
            "1 inline plugin ≤ 1,000 ns", _ns(inline), None if inline is None else inline <= 1000
        ),
    ]
    for name, peer, factor in (
        ("LangChain", langchain, 5),
        ("LlamaIndex CM (1 handler)", llama, 6),
    ):
        if inline is None or peer is None:
            checks.append(TargetCheck(f"1 inline ≥ {factor}x faster than {name}", "not run", None))
        else:
            checks.append(
                TargetCheck(
                    f"1 inline ≥ {factor}x faster than {name}",
                    f"{peer / inline:.1f}x ({_ns(peer)} vs {_ns(inline)})",
                    peer / inline >= factor,
                )
            )
    if sinks is not None and sinks.measurement is not None:
        m = sinks.measurement
        checks.append(
            TargetCheck(
                "wandb + aim + openinference ≤ 3,000 ns on the caller's thread (wall)",
                f"{_ns(m.median_ns)} wall, {_ns(m.cpu_median_ns)} thread CPU",
                m.median_ns <= 3000,
            )
        )
    else:
        checks.append(
            TargetCheck(
                "wandb + aim + openinference ≤ 3,000 ns on the caller's thread", "not run", None
            )
        )
    checks.append(
        TargetCheck(
            "1 background plugin ≤ 1,500 ns",
            _ns(background),
            None if background is None else background <= 1500,
        )
    )
    tp = results.throughput
    if tp is not None:
        checks.append(
            TargetCheck(
                "≥ 100,000 events/s into a background plugin, 0 drops",
                f"{tp.events_per_s:,.0f} events/s ({tp.pairs_per_s:,.0f} start+end pairs/s), "
                f"{tp.dropped} dropped",
                tp.events_per_s >= 100_000 and tp.dropped == 0,
            )
        )
    mem = results.memory
    if mem is not None:
        checks.append(
            TargetCheck(
                f"RSS growth < 20 MB over {mem.pairs:,} event pairs",
                f"{mem.growth_mb:+.1f} MB (peak {mem.rss_peak_mb - mem.rss_before_mb:+.1f} MB)",
                mem.growth_mb < 20,
            )
        )
    return checks
