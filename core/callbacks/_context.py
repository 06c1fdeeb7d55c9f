"""Carrying the caller's context (active trace, parent event, attributes) into other threads.

The active trace and the current parent event live in a ``contextvars.ContextVar``, so asyncio
tasks inherit them on their own. A plain ``threading.Thread`` starts with an empty context, so its
events open a trace of their own; use :func:`wrap` or :class:`ContextThreadPoolExecutor` to carry
the caller's trace into another thread.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["ContextThreadPoolExecutor", "current_attributes", "using_attributes", "wrap"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_attributes: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "callbacks_trace_attributes", default=MappingProxyType({})
)


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
