"""Events per second the sinks sustain before they drop: the capacity section of the end-to-end
benchmark.

For each configuration (each sink alone and all three, with their default delivery, the
sidecar), three fresh processes of :mod:`benchmarks.e2e_capacity_app` replay the events of the
end-to-end app's queries (same types, nesting and payloads):

1. as fast as the sidecar takes them, for ``--saturate`` seconds (the producer keeps a backlog
   of work queued, within a large queue, so nothing drops): the rate the sidecar sustains;
2. at ``--below`` (0.9) times that rate for ``--seconds``, with the default queue bound:
   nothing may be dropped;
3. at ``--above`` (1.5) times that rate with the default queue bound, until drops start (at
   most ``--max-seconds``): when they start, and that every record is counted.

The section it writes into ``--out`` (``benchmarks/E2E.md``) replaces the one there, if any.

``python -m benchmarks.e2e_capacity [--config callbacks:aim] [--out benchmarks/E2E.md]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .machine import describe_machine
from .otlp_receiver import ReceiverProcess, run_app

__all__ = ["CONFIGS", "HEADING", "main", "render", "run", "write_section"]

CONFIGS = (
    "callbacks:openinference",
    "callbacks:wandb",
    "callbacks:aim",
    "callbacks:wandb+aim+openinference",
)
"""Each sink alone, then all three, each with the delivery it asks for (the sidecar)."""

HEADING = "## Events/s sustained before drops"
"""The heading of the section this module owns in the report."""

_SATURATE_QUEUE = 65536
"""The queue bound of the saturating run. The rate does not depend on it (the sender sends up to
1,024 records a batch either way); the backlog the producer keeps (three quarters of it) must
outlast the 2 s a ``stats()`` sample can take, or a fast sink would idle between samples."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_app(receiver: ReceiverProcess, config: str, *args: str) -> dict[str, Any]:
    return run_app(receiver, "benchmarks.e2e_capacity_app", config, *args)


def run(
    configs: Sequence[str],
    *,
    saturate_s: float = 20.0,
    below: float = 0.9,
    below_s: float = 10.0,
    above: float = 1.5,
    above_max_s: float = 60.0,
    warmup: int = 50,
    save: Path | None = None,
) -> dict[str, Any]:
    """Measure each configuration (see the module docstring); returns the report's data, also
    written to ``save`` (JSON) after each configuration."""
    receiver = ReceiverProcess()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    report = {
        "started": started,
        "load_average": load,
        "machine": describe_machine(),
        "saturate_s": saturate_s,
        "below": below,
        "below_s": below_s,
        "above": above,
        "above_max_s": above_max_s,
        "results": results,
    }
    common = ("--warmup", str(warmup))
    try:
        for config in configs:
            capacity = _run_app(
                receiver,
                config,
                "--saturate",
                str(saturate_s),
                "--queue-size",
                str(_SATURATE_QUEUE),
                *common,
            )
            qps = capacity["sustained_qps"]
            if not qps:
                raise RuntimeError(f"{config}: too few samples to measure a rate: {capacity}")
            _log(f"{config}: sustains {qps:.0f} queries/s")
            slower = _run_app(
                receiver, config, "--rate", f"{qps * below:.3f}", "--seconds", str(below_s), *common
            )
            _log(f"{config}: at {below}x dropped {slower['dropped']}")
            faster = _run_app(
                receiver,
                config,
                "--rate",
                f"{qps * above:.3f}",
                "--seconds",
                str(above_max_s),
                "--until-drops",
                *common,
            )
            _log(f"{config}: at {above}x dropped {faster['dropped']} from {faster['first_drop_s']}")
            results[config] = {"capacity": capacity, "below": slower, "above": faster}
            if save is not None:
                save.write_text(json.dumps(report), encoding="utf-8")
    finally:
        receiver.close()
    return report


def _rate(result: dict[str, Any]) -> str:
    return f"{result['offered_qps']:,.0f} q/s"


def render(report: dict[str, Any]) -> str:
    """The Markdown section."""
    machine = report["machine"]
    load = ", ".join(f"{x:.1f}" for x in report["load_average"])
    lines = [
        HEADING,
        "",
        f"{report['started']}; {machine.get('CPU', '')}, {machine.get('cores', '')} cores, "
        f"{machine.get('Python', '')}; load average at the start {load} (the machine is "
        "shared: other processes' load lowers these rates). Each run is a fresh process "
        "that replays the events of the app's queries (recorded from the real query engine: "
        "per query 8 events, each a start and an end, and a trace: 18 records) into the "
        "sinks with their default delivery (the sidecar).",
        "",
        f"**Sustained**: replayed for {report['saturate_s']:g} s as fast as the sidecar took "
        f"them (the producer keeps up to three quarters of a {_SATURATE_QUEUE:,}-record queue "
        "waiting, so the sidecar never idles and nothing drops); the rate is the growth of "
        "`delivered` in the plugins' `stats()` while the queue was never empty. Events/s "
        "counts every start and end, and the trace's (18 per query); sink records/s what "
        "each sink's hooks were handed. CPU columns: share of one core while producing; "
        "sidecar ms/query is the sidecar's (and its children's) CPU per query handled, so "
        "1000 / it is what the sidecar would sustain on a core of its own.",
        "",
        "| configuration | sustained queries/s | events/s | sink records/s | app CPU "
        "| sidecar + children CPU | sidecar ms/query |",
        "|---|---|---|---|---|---|---|",
    ]
    for config, runs in report["results"].items():
        c = runs["capacity"]
        qps = c["sustained_qps"] or 0.0
        per_query = c["delivered_per_query"]
        sinks = ", ".join(f"{n} {qps * per_query[n]:,.0f}" for n in sorted(per_query))
        bound = "" if c["saturated"] else " (queue emptied: at least)"
        per_ms = c["children_cpu_s"] / (qps * c["seconds"]) * 1e3 if qps else 0.0
        lines.append(
            f"| {config} | {qps:,.0f}{bound} | {qps * c['records_per_query']:,.0f} | {sinks} "
            f"| {c['app_cpu_s'] / c['seconds']:.0%} | {c['children_cpu_s'] / c['seconds']:.0%} "
            f"| {per_ms:.2f} |"
        )
    below, above = report["below"], report["above"]
    lines += [
        "",
        f"**Confirmed** with the default queue bound: at {below:g}x the sustained rate for "
        f"{report['below_s']:g} s, and at {above:g}x until drops start (at most "
        f"{report['above_max_s']:g} s). Paced by the monotonic clock, one query at a time. "
        '"Queue" is the deepest queue a sample saw; "drain" the final flush after the '
        'producer stopped (the backlog left); "handled": the growth of `delivered` while the '
        f"producer ran at {above:g}x, what the sink sustained under a paced overload; "
        '"counted": handled + dropped + lost equals the records offered.',
        "",
        f"| configuration | at {below:g}x | dropped | lost | queue | drain s "
        f"| at {above:g}x | handled | first drop after s | dropped / offered records "
        "| counted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config, runs in report["results"].items():
        b, a = runs["below"], runs["above"]
        first = f"{a['first_drop_s']:.1f}" if a["first_drop_s"] is not None else "none"
        handled = f"{a['sustained_qps']:,.0f} q/s" if a["sustained_qps"] else "-"
        lines.append(
            f"| {config} | {_rate(b)} | {b['dropped']} | {b['lost']} | {b['max_queue_depth']:,} "
            f"| {b['flush_s']:.1f} | {_rate(a)} | {handled} | {first} "
            f"| {a['dropped']:,} / {a['offered_records']:,} | {'yes' if a['accounted'] else 'NO'} |"
        )
    lines += [
        "",
        "Run it with `python -m benchmarks.e2e_capacity` (part of `nox -s bench-e2e`).",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Put ``section`` into the report at ``path``, replacing the one there (from
    :data:`HEADING` to the next ``## `` heading), or at its end."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start = text.find(HEADING)
    if start < 0:
        path.write_text(text.rstrip("\n") + "\n\n" + section if text else section, "utf-8")
        return
    end = text.find("\n## ", start + len(HEADING))
    rest = text[end + 1 :] if end >= 0 else ""
    path.write_text(text[:start] + section + ("\n" + rest if rest else ""), "utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e_capacity", description=__doc__)
    parser.add_argument("--config", action="append", help="one of CONFIGS; default: all")
    parser.add_argument("--saturate", type=float, default=20.0, metavar="SECONDS")
    parser.add_argument("--below", type=float, default=0.9)
    parser.add_argument("--seconds", type=float, default=10.0, help="of the run below")
    parser.add_argument("--above", type=float, default=1.5)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="of the run above")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/E2E.md"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--from-json", type=Path, default=None, help="render a saved run instead of running"
    )
    args = parser.parse_args(argv)
    if args.from_json is not None:
        report = json.loads(args.from_json.read_text(encoding="utf-8"))
    else:
        report = run(
            args.config or list(CONFIGS),
            saturate_s=args.saturate,
            below=args.below,
            below_s=args.seconds,
            above=args.above,
            above_max_s=args.max_seconds,
            warmup=args.warmup,
            save=args.json,
        )
    section = render(report)
    write_section(args.out, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
