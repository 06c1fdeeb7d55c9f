"""Traces and the context that carries them across asyncio tasks and threads.

The active trace and the current parent event live in a ``contextvars.ContextVar``, so asyncio
tasks inherit them on their own. A plain ``threading.Thread`` starts with an empty context, so its
events open a trace of their own; use :func:`wrap` or :class:`ContextThreadPoolExecutor` to carry
the caller's trace into another thread.
"""

from __future__ import annotations

import contextvars
import functools
import random
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, TypeVar

from .events import ROOT, EventType, wall_time_ns

__all__ = ["ContextThreadPoolExecutor", "Trace", "current_attributes", "using_attributes", "wrap"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_attributes: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "callbacks_trace_attributes", default=MappingProxyType({})
)


def _new_trace_id() -> str:
    return f"{random.getrandbits(128):032x}"


class Trace:
    """One trace: a query, an agent run, or any unit of work with nested events.

    A trace owns its own ``trace_map``, counts and durations, so concurrent traces never share
    state. The object is live while the trace runs and final once ``on_trace_end`` is called.
    """

    __slots__ = (
        "__weakref__",
        "_durations",
        "_map",
        "_nesting",
        "_open",
        "_previous_frame",
        "attributes",
        "end_time_ns",
        "id",
        "implicit",
        "name",
        "sampled",
        "start_time_ns",
    )

    def __init__(
        self,
        name: str,
        start_time_ns: int,
        *,
        trace_id: str | None = None,
        implicit: bool = False,
        sampled: bool = True,
    ) -> None:
        self.id = trace_id or _new_trace_id()
        self.name = name
        self.start_time_ns = start_time_ns
        self.end_time_ns: int | None = None
        self.attributes: Mapping[str, Any] = _attributes.get()
        self.implicit = implicit
        self.sampled = sampled
        # Only single-bytecode dict/list operations touch these on the hot path, which keeps them
        # consistent across threads without a lock.
        self._map: dict[str, list[str]] = {}
        self._open: dict[str, Any] = {}
        self._durations: dict[EventType, list[int]] = {}
        self._previous_frame: Any = None
        self._nesting = 0

    @property
    def ended(self) -> bool:
        """True once the trace has ended."""
        return self.end_time_ns is not None

    @property
    def trace_map(self) -> dict[str, list[str]]:
        """``{parent_id: [child ids]}`` from ``"root"``, as LlamaIndex's ``trace_map`` (a copy)."""
        return {parent: list(children) for parent, children in self._map.items()}

    @property
    def root_event_ids(self) -> list[str]:
        """Ids of the outermost events, in start order."""
        return list(self._map.get(ROOT, ()))

    @property
    def open_event_ids(self) -> list[str]:
        """Ids of events started but not yet ended."""
        return list(self._open)

    @property
    def counts(self) -> dict[EventType, int]:
        """How many events of each type this trace started."""
        counts = {t: len(d) for t, d in list(self._durations.items())}
        for start in list(self._open.values()):
            counts[start.type] = counts.get(start.type, 0) + 1
        return counts

    @property
    def durations_ns(self) -> dict[EventType, list[int]]:
        """The duration of every ended event, per type, in nanoseconds."""
        return {t: list(d) for t, d in list(self._durations.items())}

    @property
    def total_durations_ns(self) -> dict[EventType, int]:
        """Total time spent in each event type (nested events count in their own type too)."""
        return {t: sum(d) for t, d in list(self._durations.items())}

    @property
    def event_count(self) -> int:
        """Events started in this trace."""
        return sum(self.counts.values())

    @property
    def duration_ns(self) -> int | None:
        """Nanoseconds from start to end; ``None`` while the trace runs."""
        return None if self.end_time_ns is None else self.end_time_ns - self.start_time_ns

    @property
    def start_wall_time_ns(self) -> int:
        """Wall-clock start (ns since the epoch)."""
        return wall_time_ns(self.start_time_ns)

    @property
    def end_wall_time_ns(self) -> int | None:
        """Wall-clock end (ns since the epoch), once ended."""
        return None if self.end_time_ns is None else wall_time_ns(self.end_time_ns)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "running"
        return f"<Trace {self.name!r} {self.id[:8]} {state} events={self.event_count}>"


def wrap(fn: F) -> F:
    """Bind ``fn`` to the caller's context (active trace, parent event, attributes).

    Call the result from any thread: its events nest under the event that was current when
    ``wrap`` was called. Each call runs in its own copy of that context, so one wrapped function
    can run in many threads at once.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        return captured.copy().run(fn, *args, **kwargs)

    return bound  # type: ignore[return-value]


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the submitter's context, so their events join
    the submitter's trace."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)


@contextmanager
def using_attributes(
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: list[str] | None = None,
    **extra: Any,
) -> Iterator[Mapping[str, Any]]:
    """Attach attributes (session, user, metadata, tags) to the traces started inside the block.

    Nested blocks add to the outer ones. Exporters such as callbacks-openinference read them
    from ``trace.attributes``.
    """
    merged = dict(_attributes.get())
    for key, value in (("session_id", session_id), ("user_id", user_id), ("tags", tags)):
        if value is not None:
            merged[key] = value
    if metadata is not None:
        merged["metadata"] = {**merged.get("metadata", {}), **metadata}
    merged.update(extra)
    frozen = MappingProxyType(merged)
    token = _attributes.set(frozen)
    try:
        yield frozen
    finally:
        _attributes.reset(token)


def current_attributes() -> Mapping[str, Any]:
    """The attributes set by the enclosing :func:`using_attributes` blocks."""
    return _attributes.get()
