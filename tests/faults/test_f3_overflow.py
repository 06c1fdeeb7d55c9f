"""Fault 3: a full queue drops events (and traces), never the control items that ``flush()`` and
``shutdown()`` queue, under both overflow policies."""

from __future__ import annotations

import threading

import pytest

from callbacks import CallbackManager, EventType, hookimpl

QUEUE = 8


class Gated:
    """A background plugin whose first event blocks its worker until the test opens the gate."""

    callbacks_name = "gated"
    callbacks_delivery = "background"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.starts = 0
        self.flushes = 0
        self.shutdown_ran = False

    @hookimpl
    def on_event_start(self, event) -> None:
        self.entered.set()
        self.gate.wait(30.0)
        self.starts += 1

    @hookimpl
    def callbacks_flush(self, timeout: float) -> None:
        self.flushes += 1

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        self.shutdown_ran = True


def _emit(cm: CallbackManager, n: int) -> None:
    for _ in range(n):
        cm.on_event_start(EventType.LLM)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_full_queue_never_evicts_flush_or_shutdown_markers(policy: str) -> None:
    plugin = Gated()
    cm = CallbackManager(plugins=[plugin], config={"queue_size": QUEUE, "overflow": policy})
    emitted = 1
    _emit(cm, 1)
    assert plugin.entered.wait(10.0)
    _emit(cm, QUEUE)  # the queue is now full
    emitted += QUEUE
    # A flush that cannot wait (timeout 0) leaves its marker queued behind the full queue.
    assert cm.flush(timeout=0.0) is False
    _emit(cm, 1000)  # overflow: events must give way, the marker must not
    emitted += 1000
    plugin.gate.set()
    assert cm.flush(timeout=20.0) is True
    assert plugin.flushes == 2  # both markers reached the worker
    stats = cm.stats()["gated"]
    # Only events are dropped, and every event is either delivered or counted as dropped.
    assert stats["dropped"] == 1000, stats
    assert plugin.starts + stats["dropped"] == emitted, (plugin.starts, stats)
    assert cm.flush(timeout=5.0) is True
    assert cm.shutdown(timeout=5.0) is True
    assert plugin.shutdown_ran
