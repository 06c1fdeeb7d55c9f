"""Fault 9 (the host's part): the caller's cost per event does not grow with what background
plugins hold: a full backlog in their queue, or a large heap of their own. The tail under load
(p99.9, maximum, with and without the sinks) is reported by ``python -m benchmarks.tail``; a
full garbage collection over the plugins' heap is outside the host's reach (README, limits)."""

from __future__ import annotations

import gc
import statistics
import threading
import time

import pytest

from callbacks import CallbackManager, EventType, hookimpl

BATCHES = 15
PAIRS = 2000
BACKLOG = 50_000


class Holder:
    """A background plugin that can hold a heap of its own and block its worker."""

    callbacks_name = "holder"
    callbacks_delivery = "background"

    def __init__(self, objects: int) -> None:
        self.heap = [(i, str(i)) for i in range(objects)]
        self.gate = threading.Event()

    @hookimpl
    def on_event_start(self, event) -> None:
        self.gate.wait(60.0)


def _caller_ns_per_pair(cm: CallbackManager) -> float:
    """Median caller-thread CPU per event pair, over batches (the GC is paused while timing)."""
    costs = []
    for _ in range(BATCHES):
        gc.disable()
        try:
            t0 = time.thread_time_ns()
            with cm.as_trace("batch"):
                for _ in range(PAIRS):
                    with cm.event(EventType.LLM):
                        pass
            costs.append((time.thread_time_ns() - t0) / PAIRS)
        finally:
            gc.enable()
    return statistics.median(costs)


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_caller_cost_does_not_grow_with_what_background_plugins_hold(policy: str) -> None:
    config = {"queue_size": BACKLOG, "overflow": policy}
    light = Holder(0)
    light.gate.set()
    heavy = Holder(1_000_000)
    cm_light = CallbackManager(plugins=[light], config=config)
    cm_heavy = CallbackManager(plugins=[heavy], config=config)
    try:
        for _ in range(BACKLOG + 10):  # the heavy plugin's queue is full and stays full
            cm_heavy.on_event_start(EventType.LLM)
        assert cm_heavy.stats()["holder"]["queue_depth"] >= BACKLOG
        baseline = _caller_ns_per_pair(cm_light)
        loaded = _caller_ns_per_pair(cm_heavy)
        assert cm_heavy.stats()["holder"]["queue_depth"] >= BACKLOG
    finally:
        heavy.gate.set()
        cm_light.shutdown(timeout=10.0)
        cm_heavy.shutdown(timeout=10.0)
    print(f"{policy}: {baseline:.0f} ns per pair idle, {loaded:.0f} ns with a full backlog")
    assert loaded < 2.0 * baseline, (baseline, loaded)
