"""The end-to-end benchmark: what tracing costs a real LlamaIndex app, as its users feel it.

Each configuration of :mod:`benchmarks.e2e_app` runs in a fresh process (same app, same queries),
``--rounds`` times in interleaved order; the report gives the median of each figure over the
rounds, and ratios to the untraced app of the same round (their median):

- app CPU: the application process's CPU (all its threads: under the GIL a sink's worker thread
  is the app's CPU) over the measured queries and the final flush;
- child CPU: the CPU of the processes the app started (wandb's ``wandb-core``, for example):
  work moved out of the process still costs the machine;
- p50 and p99 query latency;
- what the sinks received (spans at a loopback OTLP receiver that runs in its own process),
  and events dropped;
- how long the final flush waited: the backlog the sinks still had when the app stopped.

What the sinks sustain before they drop is measured apart, by :mod:`benchmarks.e2e_capacity`,
whose section of the report is kept when this one is rewritten.

``python -m benchmarks.e2e [--queries 400] [--rounds 3] [--out benchmarks/E2E.md]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .e2e_app import CONFIGS
from .e2e_capacity import HEADING
from .machine import describe_machine
from .otlp_receiver import ReceiverProcess, run_app

__all__ = ["main", "render", "run"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_one(config: str, queries: int, warmup: int, receiver: ReceiverProcess) -> dict[str, Any]:
    return run_app(
        receiver,
        "benchmarks.e2e_app",
        config,
        "--queries",
        str(queries),
        "--warmup",
        str(warmup),
    )


def run(queries: int, warmup: int, rounds: int, configs: Sequence[str]) -> dict[str, Any]:
    """Run every configuration ``rounds`` times, interleaved; keep each one's median round."""
    receiver = ReceiverProcess()
    by_config: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    try:
        for round_number in range(rounds):
            for config in configs:
                started = time.perf_counter()
                result = _run_one(config, queries, warmup, receiver)
                by_config[config].append(result)
                _log(
                    f"round {round_number + 1} {config}: cpu {result['cpu_s']:.2f} s, "
                    f"children {result['children_cpu_s']:.2f} s "
                    f"({time.perf_counter() - started:.1f} s)"
                )
    finally:
        receiver.close()
    medians = {}
    for config, results in by_config.items():
        ordered = sorted(results, key=lambda r: r["cpu_s"])
        medians[config] = ordered[len(ordered) // 2]
    return {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe_machine(),
        "queries": queries,
        "warmup": warmup,
        "rounds": rounds,
        "results": medians,
        "rounds_results": by_config,
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """The figures of one configuration: CPU, child CPU, p50 and p99 latency (seconds)."""
    latencies = result["latencies_s"]
    return {
        "cpu": result["cpu_s"],
        "children": result["children_cpu_s"],
        "p50": statistics.median(latencies),
        "p99": _percentile(latencies, 0.99),
    }


def paired(report: dict[str, Any], config: str) -> tuple[dict[str, float], dict[str, float]]:
    """(figures, ratios) of one configuration over the rounds: each figure the median of its
    rounds, each ratio the median of the round-by-round ratios to the untraced run of the same
    round (rounds are interleaved, so a ratio compares runs made a few seconds apart: on a
    shared machine whose speed drifts, that is steadier than a ratio of medians)."""
    rounds = report.get("rounds_results") or {config: [report["results"][config]]}
    own = [summarize(r) for r in rounds[config]]
    base = [summarize(r) for r in rounds.get("untraced", [])]
    figures = {key: statistics.median(s[key] for s in own) for key in own[0]}
    ratios = {
        key: statistics.median(s[key] / b[key] for s, b in zip(own, base, strict=False))
        for key in own[0]
        if base and all(b[key] for b in base)
    }
    return figures, ratios


def _dropped(result: dict[str, Any]) -> int:
    sinks = result.get("sinks", {})
    return sum((sinks.get("dropped") or {}).values()) + sum((sinks.get("lost") or {}).values())


def render(report: dict[str, Any]) -> str:
    """The Markdown report."""
    results = report["results"]
    machine = report["machine"]
    lines = [
        "# End-to-end benchmark: a LlamaIndex RAG app with sinks on",
        "",
        f"{report['started']}; {machine.get('CPU', '')}, {machine.get('cores', '')} cores, "
        f"{machine.get('Python', '')}. {report['queries']} queries after "
        f"{report['warmup']} warm-up queries, {report['rounds']} rounds, each configuration in a "
        "fresh process, configurations interleaved. Each figure is the median of its rounds; each "
        "ratio is the median of the ratios to the untraced app of the same round.",
        "",
        "| configuration | app CPU s | ÷ untraced | child-process CPU s | p50 ms | ÷ | p99 ms | ÷ "
        "| spans received | dropped + lost (worst round) | delivered per sink | final flush ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config, result in results.items():
        s, ratios = paired(report, config)

        def ratio(key: str, ratios: dict[str, float] = ratios) -> str:
            return f"{ratios[key]:.2f}" if key in ratios else "-"

        sinks = result.get("sinks", {})
        dropped = max(
            _dropped(r) for r in (report.get("rounds_results") or {}).get(config, [result])
        )
        measured = sinks.get("measured") or {}
        delivered = ", ".join(f"{n} {d}" for n, d in measured.items()) or "-"
        # The backlog the sinks still had when the last query returned. (What they sustain
        # before dropping is the capacity section's job.)
        flush = f"{result['flush_s'] * 1e3:,.0f}" if "flush_s" in result and measured else "-"
        lines.append(
            f"| {config} | {s['cpu']:.2f} | {ratio('cpu')} | {s['children']:.2f} "
            f"| {s['p50'] * 1e3:.2f} | {ratio('p50')} | {s['p99'] * 1e3:.2f} | {ratio('p99')} "
            f"| {result['spans_received']} | {dropped} | {delivered} | {flush} |"
        )
    lines += [
        "",
        "`callbacks:` rows: this project's sinks through `callbacks.integrations.llama_index`. "
        "`llama-index:` rows: LlamaIndex's own `LlamaDebugHandler` + `TokenCountingHandler`, or "
        "`llama-index-callbacks-wandb`'s `WandbCallbackHandler`, `llama-index-callbacks-aim`'s "
        "`AimCallback` and `openinference-instrumentation-llama-index` with a batch span "
        "processor. W&B runs offline, Aim writes a local repository, OTLP goes to a loopback "
        "receiver in another process (not charged to the app). Final flush: how long the "
        "flush after the last query waited, i.e. the backlog the sinks had left; what they "
        f"sustain before dropping is in the next section (`{HEADING[3:]}`).",
        "",
    ]
    return "\n".join(lines)


def _capacity_section(path: Path) -> str:
    """The capacity section already in the report, kept when the rest is rewritten."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start = text.find(HEADING)
    return "\n" + text[start:] if start >= 0 else ""


def main(argv: Sequence[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e", description=__doc__)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--config", action="append", help="one of CONFIGS, or callbacks-process:...; default: all"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/E2E.md"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    configs = args.config or list(CONFIGS)
    if "untraced" not in configs:
        configs.insert(0, "untraced")
    report = run(args.queries, args.warmup, args.rounds, configs)
    text = render(report)
    args.out.write_text(text + _capacity_section(args.out), encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(report, default=str), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
