"""Reference points: the floor (a bare call), the practical limit of any context-tracking tracer
(a contextvar set/reset and two clock reads), raw pluggy dispatch, and the bookkeeping floor: the
work callbacks does for one inline plugin, written as plainly as possible, with no host."""

from __future__ import annotations

import contextvars
import time
from pathlib import Path
from typing import Any

from .case import Case
from .timing import Fixture
from .workload import COMPLETION, MODEL, PROMPT

__all__ = ["CASES"]


def _noop(payload: Any) -> None:
    """The empty function the bare-call reference calls."""


def _bare(tmp: Path) -> Fixture:
    return Fixture({"noop": _noop, "P": {"prompt": PROMPT, "model_name": MODEL}})


def _limit(tmp: Path) -> Fixture:
    var: contextvars.ContextVar[object] = contextvars.ContextVar("bench_parent", default=None)
    return Fixture({"var": var, "clock": time.monotonic_ns, "X": ("trace", "event")})


def _pluggy(tmp: Path) -> Fixture:
    import pluggy

    spec = pluggy.HookspecMarker("callbacks_benchmark")
    impl = pluggy.HookimplMarker("callbacks_benchmark")

    class Spec:
        @spec
        def llm_start(self, payload: Any) -> None:
            """An LLM call starts."""

        @spec
        def llm_end(self, payload: Any) -> None:
            """An LLM call ends."""

    class Plugin:
        @impl
        def llm_start(self, payload: Any) -> None:
            """Does nothing."""

        @impl
        def llm_end(self, payload: Any) -> None:
            """Does nothing."""

    pm = pluggy.PluginManager("callbacks_benchmark")
    pm.add_hookspecs(Spec)
    pm.register(Plugin())
    return Fixture(
        {
            "hook": pm.hook,
            "P": {"prompt": PROMPT, "model_name": MODEL},
            "E": {"completion": COMPLETION},
        }
    )


def _bookkeeping(tmp: Path) -> Fixture:
    import itertools
    import threading
    from types import MappingProxyType

    from callbacks.events import Event, EventPhase, EventType

    var: contextvars.ContextVar[Any] = contextvars.ContextVar("bench_frame", default=None)
    ids = map("bench-".__add__, map(str, itertools.count(1)))
    trace_map: dict[str, list[str]] = {}
    open_events: dict[str, Event] = {}
    durations: dict[EventType, list[int]] = {}
    var.set(("trace", "root"))
    new, proxy, clock, ident = (
        tuple.__new__,
        MappingProxyType,
        time.monotonic_ns,
        threading.get_ident,
    )
    start_phase, end_phase, llm = EventPhase.START, EventPhase.END, EventType.LLM

    def pair(start_payload: dict[str, Any], end_payload: dict[str, Any]) -> None:
        trace_id, parent = var.get()
        event_id = next(ids)
        start = new(
            Event,
            (
                event_id,
                llm,
                start_phase,
                trace_id,
                parent,
                clock(),
                proxy(dict(start_payload)),
                None,
                None,
                ident(),
                None,
                None,
            ),
        )
        trace_map.setdefault(parent, []).append(event_id)
        open_events[event_id] = start
        token = var.set((trace_id, event_id))
        _noop(start)
        var.reset(token)
        now = clock()
        end = new(
            Event,
            (
                event_id,
                llm,
                end_phase,
                trace_id,
                parent,
                now,
                proxy(dict(end_payload)),
                now - start[5],
                None,
                ident(),
                None,
                start,
            ),
        )
        del open_events[event_id]
        durations.setdefault(llm, []).append(now - start[5])
        _noop(end)
        if len(trace_map[parent]) > 10_000:
            trace_map.clear()
            durations.clear()

    return Fixture(
        {
            "pair": pair,
            "P": {"prompt": PROMPT, "model_name": MODEL},
            "E": {"completion": COMPLETION},
        }
    )


CASES = [
    Case("bare_call", "bare function call", "reference", "noop(P)", _bare),
    Case(
        "practical_limit",
        "contextvar set/reset + 2 clock reads",
        "reference",
        """
        _s = clock()
        _t = var.set(X)
        var.reset(_t)
        _e = clock()
        """,
        _limit,
    ),
    Case(
        "pluggy_raw",
        "raw pluggy: 2 hook calls, 1 impl",
        "reference",
        """
        hook.llm_start(payload=P)
        hook.llm_end(payload=E)
        """,
        _pluggy,
        requires=("pluggy",),
    ),
    Case(
        "bookkeeping_floor",
        "bookkeeping floor: same work, no host",
        "reference",
        "pair(P, E)",
        _bookkeeping,
    ),
]
