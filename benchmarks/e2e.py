"""The end-to-end benchmark: what tracing costs a real LlamaIndex app, as its users feel it.

Each configuration of :mod:`benchmarks.e2e_app` runs in a fresh process (same app, same queries),
``--rounds`` times in interleaved order; the report gives the median round of each as ratios to
the untraced app measured in the same run:

- app CPU: the application process's CPU (all its threads: under the GIL a sink's worker thread
  is the app's CPU) over the measured queries and the final flush;
- child CPU: the CPU of the processes the app started (wandb's ``wandb-core``, for example):
  work moved out of the process still costs the machine;
- p50 and p99 query latency;
- what the sinks received (spans at a loopback OTLP receiver that runs in its own process),
  and events dropped.

``python -m benchmarks.e2e [--queries 400] [--rounds 3] [--out benchmarks/E2E.md]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .e2e_app import CONFIGS
from .machine import describe_machine

__all__ = ["main", "render", "run"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Receiver:
    """The OTLP receiver process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.otlp_receiver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else {}

    def reset(self) -> None:
        self._call("POST", "/reset")

    def spans(self) -> int:
        return int(self._call("GET", "/count")["spans"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


def _run_one(config: str, queries: int, warmup: int, receiver: _Receiver) -> dict[str, Any]:
    receiver.reset()
    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.e2e_app",
                "--config",
                config,
                "--queries",
                str(queries),
                "--warmup",
                str(warmup),
                "--out-dir",
                tmp,
                "--endpoint",
                receiver.endpoint,
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["spans_received"] = receiver.spans()
    return result


def run(queries: int, warmup: int, rounds: int, configs: Sequence[str]) -> dict[str, Any]:
    """Run every configuration ``rounds`` times, interleaved; keep each one's median round."""
    receiver = _Receiver()
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
        results.sort(key=lambda r: r["cpu_s"])
        medians[config] = results[len(results) // 2]
    return {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe_machine(),
        "queries": queries,
        "warmup": warmup,
        "rounds": rounds,
        "results": medians,
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


def render(report: dict[str, Any]) -> str:
    """The Markdown report."""
    results = report["results"]
    base = summarize(results["untraced"]) if "untraced" in results else None
    machine = report["machine"]
    lines = [
        "# End-to-end benchmark: a LlamaIndex RAG app with sinks on",
        "",
        f"{report['started']}; {machine.get('CPU', '')}, {machine.get('cores', '')} cores, "
        f"{machine.get('Python', '')}. {report['queries']} queries after "
        f"{report['warmup']} warm-up queries, median of {report['rounds']} rounds (by app CPU), "
        "each configuration in a fresh process. Ratios are to the untraced app of the same run.",
        "",
        "| configuration | app CPU s | ÷ untraced | child-process CPU s | p50 ms | ÷ | p99 ms | ÷ "
        "| spans received | dropped + lost | delivered per sink | events/s to flush |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config, result in results.items():
        s = summarize(result)

        def ratio(key: str, s: dict[str, float] = s) -> str:
            return f"{s[key] / base[key]:.2f}" if base and base[key] else "-"

        sinks = result.get("sinks", {})
        dropped = sum((sinks.get("dropped") or {}).values())
        dropped += sum((sinks.get("lost") or {}).values())
        measured = sinks.get("measured") or {}
        delivered = ", ".join(f"{n} {d}" for n, d in measured.items()) or "-"
        # Events (and traces) the slowest sink handled per second, from the first measured
        # query until the final flush returned: what the sinks sustain behind the app.
        rate = f"{min(measured.values()) / result['wall_s']:,.0f}" if measured else "-"
        lines.append(
            f"| {config} | {s['cpu']:.2f} | {ratio('cpu')} | {s['children']:.2f} "
            f"| {s['p50'] * 1e3:.2f} | {ratio('p50')} | {s['p99'] * 1e3:.2f} | {ratio('p99')} "
            f"| {result['spans_received']} | {dropped} | {delivered} | {rate} |"
        )
    lines += [
        "",
        "`callbacks:` rows: this project's sinks through `callbacks.integrations.llama_index`. "
        "`llama-index:` rows: LlamaIndex's own `LlamaDebugHandler` + `TokenCountingHandler`, or "
        "`llama-index-callbacks-wandb`'s `WandbCallbackHandler`, `llama-index-callbacks-aim`'s "
        "`AimCallback` and `openinference-instrumentation-llama-index` with a batch span "
        "processor. W&B runs offline, Aim writes a local repository, OTLP goes to a loopback "
        "receiver in another process (not charged to the app).",
        "",
    ]
    return "\n".join(lines)


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
    args.out.write_text(text, encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(report, default=str), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
