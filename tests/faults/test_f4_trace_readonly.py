"""Fault 4: a plugin cannot change what other plugins and the application see of a trace."""

from __future__ import annotations

import threading

import pytest

from callbacks import CallbackManager, EventType, hookimpl, using_attributes

ASSIGNMENTS = {
    "name": "vandalised",
    "attributes": {"user_id": "mallory"},
    "end_time_ns": 1,
    "start_time_ns": 1,
    "id": "0" * 32,
    "implicit": True,
    "sampled": False,
}


class Vandal:
    """Tries to assign every public field of the trace it is handed; counts refusals."""

    callbacks_name = "vandal"

    def __init__(self, delivery: str) -> None:
        self.callbacks_delivery = delivery
        self.refused = 0
        self.accepted: list[str] = []

    def _vandalise(self, trace) -> None:
        for field, value in ASSIGNMENTS.items():
            try:
                setattr(trace, field, value)
            except (AttributeError, TypeError):
                self.refused += 1
            else:
                self.accepted.append(field)
        try:
            trace.attributes["user_id"] = "mallory"
        except TypeError:
            self.refused += 1
        else:
            self.accepted.append("attributes[...]")

    @hookimpl
    def on_trace_start(self, trace) -> None:
        self._vandalise(trace)

    @hookimpl
    def on_trace_end(self, trace) -> None:
        self._vandalise(trace)


class Witness:
    """Records what it sees of each trace at its end (runs after the vandal)."""

    def __init__(self, name: str, delivery: str) -> None:
        self.callbacks_name = name
        self.callbacks_delivery = delivery
        self.seen: list[dict] = []
        self.lock = threading.Lock()

    @hookimpl
    def on_trace_end(self, trace) -> None:
        with self.lock:
            self.seen.append(
                {
                    "id": trace.id,
                    "name": trace.name,
                    "attributes": dict(trace.attributes),
                    "ended": trace.end_time_ns is not None
                    and trace.end_time_ns > trace.start_time_ns,
                    "implicit": trace.implicit,
                    "sampled": trace.sampled,
                }
            )


@pytest.mark.parametrize("vandal_delivery", ["inline", "background"])
def test_a_plugin_cannot_change_the_trace_others_see(vandal_delivery: str) -> None:
    vandal = Vandal(vandal_delivery)
    inline = Witness("inline-witness", "inline")
    background = Witness("background-witness", "background")
    cm = CallbackManager(plugins=[vandal, inline, background])
    try:
        with using_attributes(user_id="alice"), cm.as_trace("query") as trace:
            with cm.event(EventType.LLM):
                pass
        app_view = (trace.id, trace.name, dict(trace.attributes), trace.implicit, trace.sampled)
        end = trace.end_time_ns
        assert cm.flush(timeout=5.0)
    finally:
        cm.shutdown(timeout=5.0)
    assert vandal.accepted == []
    assert vandal.refused == 2 * (len(ASSIGNMENTS) + 1)
    assert cm.stats()["vandal"]["errors"] == 0
    assert app_view == (app_view[0], "query", {"user_id": "alice"}, False, True)
    assert end is not None and end > trace.start_time_ns
    expected = {
        "id": app_view[0],
        "name": "query",
        "attributes": {"user_id": "alice"},
        "ended": True,
        "implicit": False,
        "sampled": True,
    }
    assert inline.seen == [expected]
    assert background.seen == [expected]
