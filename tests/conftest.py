"""Shared test plugins for the host tests: real pluggy hookimpls that record what they get."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from callbacks import CallbackManager, Event, Trace, hookimpl


class Recorder:
    """Records every event and trace it receives (thread-safe)."""

    callbacks_delivery = "inline"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self.traces: list[Trace] = []

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    @hookimpl
    def on_trace_end(self, trace: Trace) -> None:
        with self.lock:
            self.traces.append(trace)

    def ends(self) -> list[Event]:
        return [e for e in self.events if not e.is_start]


class BackgroundRecorder(Recorder):
    callbacks_delivery = "background"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_manager():
    """Build managers that are always shut down after the test."""
    made: list[CallbackManager] = []

    def make(*plugins: Any, **kwargs: Any) -> CallbackManager:
        manager = CallbackManager(plugins=plugins, **kwargs)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.shutdown(timeout=2.0)
