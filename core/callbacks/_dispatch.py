"""The event path: one :class:`Dispatcher` per manager owns everything an event touches.

It holds the compiled routes (who hears which event), the context variable of the current
(trace, parent event), the pending table of the start/end API, payload freezing and masking,
trace open and close, and the host's counters. Scopes, ``traced`` and the start/end API use it;
it uses nothing above it (the registry hands it compiled routes through :meth:`install`).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._channel import Calls, count_value
from ._privacy import PayloadPolicy
from ._trace import Trace, TraceState
from .events import (
    EMPTY_PAYLOAD,
    Event,
    EventAbandoned,
    EventPhase,
    EventType,
)

if TYPE_CHECKING:
    from ._config import HostSettings

__all__ = [
    "EMPTY_ROUTE",
    "MAX_EVENTS_PER_TRACE",
    "MAX_OPEN_EVENTS_PER_TRACE",
    "MAX_OPEN_TRACES",
    "MAX_TRACE_AGE_S",
    "Dispatcher",
    "Route",
    "task_name",
]

_END = EventPhase.END
_new_tuple = tuple.__new__
_proxy = MappingProxyType
_monotonic_ns = time.monotonic_ns
_get_ident = threading.get_ident
_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task
_MAX_PENDING = 100_000

# Bounds that keep memory flat whatever the application does wrong; a trace past one of them is
# retired: closed as abandoned (its open events end with EventAbandoned), and counted in
# host_stats()["abandoned_traces"]. Later events in its context start traces of their own.
MAX_EVENTS_PER_TRACE = 100_000
"""Events one trace may start (its map and durations grow by about 80 bytes with each)."""
MAX_OPEN_EVENTS_PER_TRACE = 10_000
"""Events of one trace started and not ended at once (about 800 bytes each, until they end)."""
MAX_OPEN_TRACES = 10_000
"""Traces open at once (traces that were never ended, in contexts long gone, included)."""
MAX_TRACE_AGE_S = 3600.0
"""How long a trace may stay open."""
_MAX_TRACE_AGE_NS = int(MAX_TRACE_AGE_S * 1e9)

Route = tuple[
    tuple[tuple[Callable[[Calls, Any], None], Calls], ...],
    tuple[Callable[[Any], None], ...],
]
"""(inline, background) for one kind of item. Inline: ``(channel.call, calls)`` pairs, run on
the caller's thread. Background: one function per channel that queues the item for its worker."""

EMPTY_ROUTE: Route = ((), ())


def task_name() -> str | None:
    """The name of the running asyncio task, if any."""
    loop = _get_running_loop()
    if loop is None:
        return None
    task = _current_task(loop)
    return task.get_name() if task is not None else None


class Dispatcher:
    """Starts and ends events and traces, and hands them to the plugins' routes."""

    __slots__ = (
        "counts",
        "frame",
        "lock",
        "masking",
        "pending",
        "policy",
        "routes",
        "settings",
        "strict",
        "trace_routes",
        "traces",
        "waiting",
    )

    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        self.strict = settings.strict
        self.policy = PayloadPolicy(
            hide_inputs=settings.hide_inputs,
            hide_outputs=settings.hide_outputs,
            max_payload_chars=settings.max_payload_chars,
        )
        self.masking = self.policy.active
        self.routes: dict[EventType, tuple[Route, Route] | None] = dict.fromkeys(EventType)
        self.trace_routes: tuple[Route, Route] = (EMPTY_ROUTE, EMPTY_ROUTE)
        self.frame: contextvars.ContextVar[tuple[TraceState, str] | None] = contextvars.ContextVar(
            "callbacks_frame", default=None
        )
        # An OrderedDict finds its oldest entry in O(1); a dict would scan the slots its
        # removals left behind.
        self.traces: OrderedDict[TraceState, None] = OrderedDict()
        """Open traces, oldest first."""
        self.pending: dict[str, tuple[Any, Any, Event | None, TraceState]] = {}
        """Events of the start/end API awaiting their end:
        ``{id: (scope, previous frame, start event, trace)}``."""
        self.waiting: dict[TraceState, None] = {}
        """Traces asked to end while some of their events were open, oldest first."""
        # Reentrant: ending a trace delivers to inline plugins, whose hooks may start and end
        # traces of their own.
        self.lock = threading.RLock()
        # itertools.count increments atomically under the GIL, so these stay exact across threads.
        self.counts = {
            name: itertools.count()
            for name in ("traces", "sampled_out", "abandoned", "abandoned_traces", "unmatched_ends")
        }

    def install(
        self, routes: dict[EventType, tuple[Route, Route] | None], trace_routes: tuple[Route, Route]
    ) -> None:
        """Use new routes (``None`` for an event type nobody hears: its events are not built).
        The table is updated in place, so a reference to :attr:`routes` stays current."""
        self.trace_routes = trace_routes
        self.routes.update(routes)

    # -- delivery and payloads -----------------------------------------------------------------

    @staticmethod
    def deliver(route: Route, item: Any) -> None:
        """Hand ``item`` (an event or a trace) to every plugin on ``route``."""
        inline, background = route
        for call, calls in inline:
            call(calls, item)
        for enqueue in background:
            enqueue(item)

    def use_policy(self, policy: PayloadPolicy) -> None:
        """Apply ``policy`` (redaction hooks, hiding, limits) to every payload from now on; when
        it changes nothing, events skip it entirely."""
        self.policy = policy
        self.masking = policy.active

    # -- events --------------------------------------------------------------------------------

    def end(
        self,
        start: Event,
        state: TraceState,
        payload: Mapping[Any, Any] | None,
        exception: BaseException | None,
    ) -> bool:
        """End the event ``start`` began (once: False if it already ended or was abandoned),
        record its duration in its trace and deliver the end event. The context is untouched."""
        if state.open.pop(start[0], None) is None:
            return False
        now = _monotonic_ns()
        duration = now - start[5]
        thread = _get_ident()
        end: Event = _new_tuple(
            Event,
            (
                start[0],
                start[1],
                _END,
                start[3],
                start[4],
                now,
                (
                    self.policy.payload(start[1], _END, payload)
                    if self.masking
                    else _proxy(dict(payload))
                )
                if payload
                else EMPTY_PAYLOAD,
                duration,
                exception
                if exception is None or not self.masking
                else self.policy.exception(exception),
                thread,
                start[10] if thread == start[9] else task_name(),
                start,
            ),
        )
        durations = state.durations.get(start[1])
        if durations is None:
            state.durations[start[1]] = [duration]
        else:
            durations.append(duration)
        routes = self.routes[start[1]]
        if routes is not None:
            inline, background = routes[1]
            for call, calls in inline:
                call(calls, end)
            for enqueue in background:
                enqueue(end)
        return True

    def abandon(self, start: Event, state: TraceState) -> None:
        """End an event that never ended, with :class:`EventAbandoned` attached (counted)."""
        error = EventAbandoned(f"{start.type.value} event {start.id} never ended")
        if self.end(start, state, None, error):
            next(self.counts["abandoned"])

    def remember(
        self, event_id: str, scope: Any, previous: Any, start: Event | None, state: TraceState
    ) -> None:
        """Keep an event of the start/end API until its end, with the frame that was current
        before it; past the bound, the oldest is abandoned."""
        pending = self.pending
        pending[event_id] = (scope, previous, start, state)
        if len(pending) > _MAX_PENDING:
            _, _, oldest, oldest_state = pending.pop(next(iter(pending)))
            if oldest is not None:
                self.abandon(oldest, oldest_state)

    # -- traces --------------------------------------------------------------------------------

    def open_trace(self, name: str, *, implicit: bool, trace_id: str | None = None) -> TraceState:
        """Open a trace (sampled or not, decided here once) and deliver ``on_trace_start``."""
        rate = self.settings.sample_rate
        sampled = rate >= 1.0 or random.random() < rate
        trace = Trace(name, _monotonic_ns(), trace_id=trace_id, implicit=implicit, sampled=sampled)
        state = TraceState(trace)
        traces = self.traces
        traces[state] = None
        next(self.counts["traces"])
        if sampled:
            self.deliver(self.trace_routes[0], trace)
        else:
            next(self.counts["sampled_out"])
        self._retire_stale(trace._start_time_ns)
        return state

    def _retire_stale(self, now_ns: int) -> None:
        # The oldest open trace comes first; a few per call keep every call cheap.
        traces = self.traces
        for _ in range(4):
            try:
                oldest = next(iter(traces))
            except (StopIteration, RuntimeError):  # empty, or changed by another thread
                return
            too_old = now_ns - oldest.trace._start_time_ns > _MAX_TRACE_AGE_NS
            if not too_old and len(traces) <= MAX_OPEN_TRACES:
                return
            self.retire(oldest)

    def retire(self, state: TraceState) -> None:
        """Close a stale trace as abandoned (counted): its unfinished events end with
        :class:`EventAbandoned`, then the trace ends."""
        self.traces.pop(state, None)
        if state.ended:
            return
        next(self.counts["abandoned_traces"])
        for event_id in list(state.open):
            self.pending.pop(event_id, None)
            start = state.open.get(event_id)
            if start is not None:
                self.abandon(start, state)
        self.close_trace(state)

    def close_trace(self, state: TraceState) -> None:
        """End the trace once its last open event has ended.

        A trace asked to end while events are still open (a stream the consumer is still
        reading, an end coming from another thread) waits for them: their ends are delivered in
        that trace, and the last one ends it (:meth:`event_ended`). A waiting trace is still an
        open trace for the host's stale rules (:meth:`retire`); it also goes stale, and ends
        with its open events abandoned, when it has waited the ``trace_wait`` setting's seconds
        (checked whenever a trace is asked to end), and at shutdown (:meth:`close_stale`).
        """
        with self.lock:
            if state.ended:
                return
            if state.open:
                if state.closing_since is None:
                    state.closing_since = _monotonic_ns()
                    self.waiting[state] = None
                self._close_stale(everything=False)
                if state.open:
                    return
            self.waiting.pop(state, None)
            self._end_trace(state)

    def event_ended(self, state: TraceState) -> None:
        """After an event of a waiting trace ended: end the trace if that was its last."""
        if not state.open:
            self.close_trace(state)

    def close_stale(self) -> None:
        """End every waiting trace now, abandoning its open events (at shutdown)."""
        with self.lock:
            self._close_stale(everything=True)

    def _close_stale(self, everything: bool) -> None:
        now = _monotonic_ns()
        wait_ns = int(self.settings.trace_wait * 1e9)
        waiting = self.waiting
        while waiting:
            oldest = next(iter(waiting))
            since = oldest.closing_since or now
            if not (everything or now - since >= wait_ns):
                return
            del waiting[oldest]
            self._end_trace(oldest)

    def _end_trace(self, state: TraceState) -> None:
        """Abandon the trace's unfinished events, end it, and deliver ``on_trace_end``."""
        if state.ended:
            return
        for event_id in list(state.open):
            self.pending.pop(event_id, None)
            start = state.open.get(event_id)
            if start is not None:
                self.abandon(start, state)
        self.traces.pop(state, None)
        if state.close(_monotonic_ns()) and state.sampled:
            self.deliver(self.trace_routes[1], state.trace)

    def after_fork_in_child(self) -> None:
        """In a forked child: the traces open at the fork, and their events, are the parent's,
        which ends and delivers them. Here they end silently; new events start new traces."""
        now = _monotonic_ns()
        for state in list(self.traces):
            state.open.clear()
            state.close(now)
        self.traces.clear()
        self.pending.clear()
        self.waiting.clear()
        self.lock = threading.RLock()

    def current(self) -> tuple[TraceState, str] | None:
        """The running trace and the current parent id in this context, if a trace runs."""
        frame = self.frame.get()
        return frame if frame is not None and not frame[0].ended else None

    def reset_frame(self, token: contextvars.Token[Any]) -> None:
        """Undo a change of the current frame, also from another context (e.g. another task,
        where ``ContextVar.reset`` refuses)."""
        var = self.frame
        try:
            var.reset(token)
        except ValueError:
            old = token.old_value
            var.set(None if old is contextvars.Token.MISSING else old)

    def host_stats(self) -> dict[str, int]:
        """traces, sampled_out, abandoned (events), abandoned_traces, unmatched_ends, and events
        pending an end."""
        counts = {name: count_value(counter) for name, counter in self.counts.items()}
        return {**counts, "pending": len(self.pending)}
