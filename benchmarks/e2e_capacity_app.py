"""One run of the capacity benchmark, in a fresh process: how many events per second the sinks
of one configuration sustain behind the end-to-end app.

The process records a few queries of the real LlamaIndex app (:mod:`benchmarks.recorded_query`),
starts the configuration's sinks with their default delivery (the sidecar), warms them up with
``--warmup`` replayed queries and flushes, then replays queries for a while:

- ``--saturate SECONDS``: as fast as the sidecar takes them. This thread replays flat out
  while the backlog (queries replayed but not yet handled, from ``delivered`` in the plugins'
  ``stats()``) is under three quarters of the queue, and waits for the next sample otherwise,
  so the sidecar always has work and nothing is dropped; the rate it sustains is the growth
  of ``delivered`` while its queue never emptied. (Replaying flat out into a full queue would
  spend a core on records that are dropped: on a 2-core machine, the sidecar's core.)
- ``--rate QPS --seconds S``: at a fixed rate of queries per second, paced by the monotonic
  clock; ``--until-drops`` stops one second after the first drop is seen instead (at most
  ``S`` seconds).

``--queue-size`` sets the queue bound (default: the host's). A sampler thread reads
``manager.stats()`` throughout. The process prints one JSON line: what was offered, what each
sink got, what was dropped or lost, the samples, and the CPU of this process and of its
children (the sidecar, wandb-core) while producing.

``python -m benchmarks.e2e_capacity_app --config callbacks:aim --saturate 10 --out-dir /tmp/x``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from callbacks import CallbackManager

from .e2e_app import callbacks_config, children_cpu
from .recorded_query import RecordedQuery, record_queries, replay

__all__ = ["main", "run"]

_RECORDED = 12
_SAMPLE_EVERY_S = 0.25
_AFTER_FIRST_DROP_S = 1.0
_FLUSH_TIMEOUT_S = 600.0


class _Sampler(threading.Thread):
    """Reads ``manager.stats()`` until stopped. A process channel's ``stats()`` asks the sidecar
    for the plugin's own counters first, behind every queued record (up to 2 s), then reads the
    link's counters: so a sample is timed when the call returns, and takes ``delivered`` from
    the last plugin listed (read last) with the link's ``dropped``, ``lost`` and
    ``queue_depth``."""

    def __init__(self, manager: CallbackManager, baseline_dropped: int) -> None:
        super().__init__(name="capacity-sampler", daemon=True)
        self.manager = manager
        self.baseline_dropped = baseline_dropped
        self.samples: list[dict[str, Any]] = []
        self.delivered = 0
        """``delivered`` of the last sample."""
        self.sampled = threading.Event()
        self.stop = threading.Event()
        self.first_drop = threading.Event()
        self.started_at = time.monotonic()

    def _sample(self) -> dict[str, Any]:
        stats = self.manager.stats()
        at = time.monotonic()
        last = stats[list(stats)[-1]]
        return {
            "t": at - self.started_at,
            "delivered": last["delivered"],
            "dropped": last["dropped"],
            "lost": last["lost"],
            "queue_depth": last["queue_depth"],
        }

    def run(self) -> None:
        while not self.stop.is_set():
            sample = self._sample()
            self.samples.append(sample)
            self.delivered = sample["delivered"]
            self.sampled.set()
            if sample["dropped"] > self.baseline_dropped:
                self.first_drop.set()
            self.stop.wait(_SAMPLE_EVERY_S)


class _Backlog:
    """Queries replayed but not yet handled, as far as the sampler last saw."""

    def __init__(self, sampler: _Sampler, delivered_before: int, per_query: float) -> None:
        self.sampler = sampler
        self.delivered_before = delivered_before
        self.per_query = per_query

    def queries(self, replayed: int) -> float:
        return replayed - (self.sampler.delivered - self.delivered_before) / self.per_query


def _produce(
    manager: CallbackManager,
    queries: Sequence[RecordedQuery],
    seconds: float,
    *,
    rate: float | None = None,
    backlog: _Backlog | None = None,
    backlog_limit: float = 0.0,
    stop_early: threading.Event | None = None,
) -> tuple[int, float]:
    """Replay queries for ``seconds``: at ``rate`` per second, or as fast as the sink takes
    them (``backlog`` under ``backlog_limit`` queries). Returns (queries replayed, seconds
    taken). Once ``stop_early`` is set, it ends one second later."""
    started = time.monotonic()
    deadline = started + seconds
    interval = 1.0 / rate if rate else 0.0
    count = 0
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        if stop_early is not None and stop_early.is_set():
            deadline = min(deadline, now + _AFTER_FIRST_DROP_S)
            stop_early = None
        if interval:
            due = started + count * interval
            if due > now:
                time.sleep(due - now)  # a benchmark's pacing, not synchronisation
        elif backlog is not None and backlog.queries(count) >= backlog_limit:
            backlog.sampler.sampled.clear()
            backlog.sampler.sampled.wait(_SAMPLE_EVERY_S)
            continue
        replay(manager, queries[count % len(queries)])
        count += 1
    return count, time.monotonic() - started


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope: ``delivered`` moves in steps of one acknowledged batch (up to 1,024
    records), so a fit over every sample is steadier than the two ends."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_d = sum(d for _, d in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return None
    return sum((t - mean_t) * (d - mean_d) for t, d in points) / spread


def _sustained(samples: list[dict[str, Any]], stopped_at: float) -> dict[str, Any]:
    """The delivery rate over the samples taken while the producer ran, after the first (when
    there are three or more): ``saturated`` when the queue was never empty in them (the sink set
    the pace, not the producer)."""
    window = [s for s in samples if s["t"] <= stopped_at]
    if len(window) > 2:
        window = window[1:]
    if len(window) < 2:
        return {"saturated": False, "delivered_per_s": None, "window_s": 0.0}
    return {
        "saturated": all(s["queue_depth"] > 0 for s in window),
        "delivered_per_s": _slope([(s["t"], s["delivered"]) for s in window]),
        "window_s": window[-1]["t"] - window[0]["t"],
    }


def _warm_up(manager: CallbackManager, queries: Sequence[RecordedQuery], count: int) -> bool:
    """Replay ``count`` queries, flushing every few so that even a small queue drops nothing;
    True if every flush finished."""
    chunk = max(1, manager.settings.queue_size // max(q.records for q in queries))
    flushed = True
    for i in range(count):
        replay(manager, queries[i % len(queries)])
        if (i + 1) % chunk == 0 or i + 1 == count:
            flushed = manager.flush(timeout=_FLUSH_TIMEOUT_S) and flushed
    return flushed


def run(
    config: str,
    out_dir: Path,
    endpoint: str,
    *,
    warmup: int,
    seconds: float,
    rate: float | None,
    until_drops: bool,
    queue_size: int | None,
) -> dict[str, Any]:
    """One run (see the module docstring); returns its figures."""
    queries = record_queries(_RECORDED)
    names = config.partition(":")[2].split("+")
    host = callbacks_config(names, out_dir, endpoint)
    if queue_size is not None:
        host["queue_size"] = queue_size
    manager = CallbackManager(load_entrypoints=True, config=host)
    warm_flushed = _warm_up(manager, queries, warmup)
    warm = manager.stats()
    last_name = list(warm)[-1]
    per_query = {n: s["delivered"] / warmup for n, s in warm.items()}

    sampler = _Sampler(manager, warm[last_name]["dropped"])
    cpu_start, children_start = time.process_time(), children_cpu()
    sampler.start()
    # At most three quarters of the queue in flight (a query queues at most all its records).
    limit = 0.75 * manager.settings.queue_size / max(q.records for q in queries)
    produced, took = _produce(
        manager,
        queries,
        seconds,
        rate=rate,
        backlog=_Backlog(sampler, warm[last_name]["delivered"], per_query[last_name]),
        backlog_limit=limit,
        stop_early=sampler.first_drop if until_drops else None,
    )
    stopped_at = time.monotonic() - sampler.started_at
    cpu, children = time.process_time() - cpu_start, children_cpu() - children_start
    flush_start = time.monotonic()
    flushed = manager.flush(timeout=_FLUSH_TIMEOUT_S)
    flush_s = time.monotonic() - flush_start
    sampler.stop.set()
    sampler.join()
    final = manager.stats()
    manager.shutdown()

    sustained = _sustained(sampler.samples, stopped_at)
    rate_records = sustained.pop("delivered_per_s")
    drops = [s["t"] for s in sampler.samples if s["dropped"] > sampler.baseline_dropped]
    delivered = {n: s["delivered"] - warm[n]["delivered"] for n, s in final.items()}
    dropped = final[last_name]["dropped"] - sampler.baseline_dropped
    lost = final[last_name]["lost"] - warm[last_name]["lost"]
    # The sink that hears every record the sidecar is sent (each configuration here has one)
    # accounts for all of them: handled, dropped before sending, or lost with a dead sidecar.
    widest = max(per_query, key=lambda n: per_query[n])
    offered_records = round(produced * per_query[widest])
    records = {q.records for q in queries}
    return {
        "config": config,
        "queue_size": manager.settings.queue_size,
        "target_qps": rate,
        "queries": produced,
        "seconds": took,
        "offered_qps": produced / took,
        "records_per_query": records.pop() if len(records) == 1 else sorted(records),
        "delivered_per_query": per_query,
        "warmup_flushed": warm_flushed,
        "warmup_dropped": sampler.baseline_dropped,
        "flushed": flushed,
        "flush_s": flush_s,
        "delivered": delivered,
        "dropped": dropped,
        "lost": lost,
        "offered_records": offered_records,
        "accounted": delivered[widest] + dropped + lost == offered_records,
        "errors": {n: s["errors"] - warm[n]["errors"] for n, s in final.items()},
        "sustained_qps": rate_records / per_query[last_name] if rate_records else None,
        **sustained,
        "first_drop_s": drops[0] if drops else None,
        "max_queue_depth": max((s["queue_depth"] for s in sampler.samples), default=0),
        "stopped_at_s": stopped_at,
        "samples": sampler.samples,
        "app_cpu_s": cpu,
        "children_cpu_s": children,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run once and print the figures as one JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e_capacity_app", description=__doc__
    )
    parser.add_argument("--config", required=True, help="callbacks:<sink>[+<sink>...]")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--saturate", type=float, metavar="SECONDS")
    mode.add_argument("--rate", type=float, metavar="QPS", help="queries per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="with --rate")
    parser.add_argument("--until-drops", action="store_true", help="with --rate")
    parser.add_argument("--queue-size", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--endpoint", default="http://127.0.0.1:4318/v1/traces")
    args = parser.parse_args(argv)
    result = run(
        args.config,
        args.out_dir,
        args.endpoint,
        warmup=args.warmup,
        seconds=args.saturate if args.saturate is not None else args.seconds,
        rate=args.rate,
        until_drops=args.until_drops,
        queue_size=args.queue_size,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # the sinks are shut down; the interpreter's teardown measures nothing


if __name__ == "__main__":
    sys.exit(main())
