"""The latency tail under load: ``python -m benchmarks.tail [--pairs N] [--threads T]``.

T threads (8 by default) each emit N event pairs (one trace per 100 pairs) while background
plugins work; every pair is timed on the caller's thread. Reported per configuration: p50, p99,
p99.9 and maximum caller latency, and the resident set after each drained phase (it must not
keep rising, and the caller's cost must not grow with what background plugins hold).
Configurations: no plugin; one background no-op; tokens + debug; tokens + debug + W&B + Aim +
OpenInference (each skipped when not installed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from callbacks import CallbackManager, EventType

from .cases_callbacks import END_PAYLOAD, START_PAYLOAD
from .plugins import NoopBackground

__all__ = ["main", "run_tail"]

_LLM = EventType.LLM
_PHASES = 3
_WANDB_DIRS = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _percentile(ordered: list[int], q: float) -> int:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _emit(cm: CallbackManager, pairs: int, out: list[int], barrier: threading.Barrier) -> None:
    event, clock = cm.event, time.perf_counter_ns
    barrier.wait()
    for done in range(0, pairs, 100):
        with cm.as_trace("tail"):
            for _ in range(min(100, pairs - done)):
                t0 = clock()
                with event(_LLM, payload=START_PAYLOAD) as scope:
                    scope.on_end(payload=END_PAYLOAD)
                out.append(clock() - t0)


def run_tail(build: Callable[[], CallbackManager], threads: int, pairs: int) -> dict[str, Any]:
    """Time every pair of ``threads`` x ``pairs`` in ``_PHASES`` phases, draining in between."""
    cm = build()
    latencies: list[int] = []
    rss: list[float] = []
    dropped = 0
    try:
        for _ in range(_PHASES):
            per_thread: list[list[int]] = [[] for _ in range(threads)]
            barrier = threading.Barrier(threads)
            workers = [
                threading.Thread(target=_emit, args=(cm, pairs // _PHASES, per_thread[i], barrier))
                for i in range(threads)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            cm.flush(timeout=600.0)
            rss.append(round(_rss_mb()))
            for values in per_thread:
                latencies.extend(values)
        dropped = sum(s["dropped"] for s in cm.stats().values())
    finally:
        cm.shutdown(timeout=60.0)
    latencies.sort()
    return {
        "pairs": len(latencies),
        "p50_us": _percentile(latencies, 0.5) / 1e3,
        "p99_us": _percentile(latencies, 0.99) / 1e3,
        "p999_us": _percentile(latencies, 0.999) / 1e3,
        "max_us": latencies[-1] / 1e3,
        "rss_mb": rss,
        "dropped": dropped,
    }


def _builtins() -> list[tuple[str, object]]:
    from callbacks_debug import DebugPlugin
    from callbacks_tokens import TokenCountingPlugin

    return [("tokens", TokenCountingPlugin()), ("debug", DebugPlugin())]


def _sinks(tmp: Path) -> list[tuple[str, object]]:
    from callbacks_aim import AimPlugin
    from callbacks_openinference import OpenInferencePlugin
    from callbacks_wandb import WandbPlugin

    for var in _WANDB_DIRS:
        os.environ[var] = str(tmp / "wandb")
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    return [
        ("wandb", WandbPlugin()),
        ("aim", AimPlugin()),
        ("openinference", OpenInferencePlugin()),
    ]


def _manager(plugins: list[tuple[str, object]], tmp: Path) -> CallbackManager:
    config = {
        "debug": {"print_trace": False},
        "wandb": {"mode": "offline", "dir": str(tmp / "wandb"), "project": "callbacks-tail"},
        "aim": {"repo": str(tmp / "aim")},
        "openinference": {"exporter": "none"},
    }
    names = {name for name, _ in plugins}
    cm = CallbackManager(config={k: v for k, v in config.items() if k in names})
    for name, plugin in plugins:
        cm.register(plugin, name=name)
    return cm


def main(argv: list[str] | None = None) -> int:
    """Print the tail table (markdown) for every configuration that can run here."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tail")
    parser.add_argument("--pairs", type=int, default=30_000, help="event pairs per thread")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        configs: list[tuple[str, Callable[[], list[tuple[str, object]]]]] = [
            ("no plugin", list),
            ("1 background no-op", lambda: [("noop", NoopBackground())]),
            ("tokens + debug", _builtins),
            ("tokens + debug + wandb + aim + openinference", lambda: _builtins() + _sinks(tmp)),
        ]
        for label, plugins in configs:
            try:
                chosen = plugins()
            except ImportError as error:
                print(f"{label}: skipped ({error})", file=sys.stderr)
                continue
            print(f"{label}: running", file=sys.stderr, flush=True)
            result = run_tail(lambda c=chosen: _manager(c, tmp), args.threads, args.pairs)
            rows.append((label, result))
    print(
        f"| plugins ({args.threads} threads x {args.pairs:,} pairs) | p50 µs | p99 µs | "
        "p99.9 µs | max µs | RSS after each drained phase (MB) | dropped |"
    )
    print("|---|---:|---:|---:|---:|---|---:|")
    for label, r in rows:
        print(
            f"| {label} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | {r['p999_us']:.0f} | "
            f"{r['max_us']:,.0f} | {' → '.join(map(str, r['rss_mb']))} | {r['dropped']:,} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
