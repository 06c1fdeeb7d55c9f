"""Who owns a trace opened by ``start_trace``, and whether that owner still runs.

``start_trace``/``end_trace`` leave the trace in the context between the two calls. When a
request fails between them, the trace stays in that context: on a pooled thread, or in a
long-lived task, every later ``start_trace`` there would join the dead trace. So the host notes
the owner of each such trace (the first application frame that called ``start_trace``, its
thread and its asyncio task), and a later ``start_trace``/``as_trace`` joins the trace only while
that owner still runs; otherwise the trace is closed as abandoned and a new one starts.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from types import FrameType
from typing import Any

__all__ = ["Owner", "owner_alive", "trace_owner"]

Owner = tuple[FrameType, int, Any]
"""(the application frame that opened the trace, its thread id, its asyncio task or None)."""

_LIBRARIES = ("callbacks.", "contextlib", "llama_index.", "langchain_core.", "langchain.")
"""Frames of these modules are skipped: the owner is the application code that called them."""
_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
_get_running_loop = asyncio._get_running_loop


def _current_task() -> Any:
    loop = _get_running_loop()
    return asyncio.current_task(loop) if loop is not None else None


def trace_owner() -> Owner | None:
    """The owner of a trace being opened here (``None`` if no application frame is found)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "callbacks" and not module.startswith(_LIBRARIES):
            return (frame, threading.get_ident(), _current_task())
        frame = frame.f_back
    return None


def _on_stack(frame: FrameType, top: FrameType | None) -> bool:
    while top is not None:
        if top is frame:
            return True
        top = top.f_back
    return False


def owner_alive(owner: Owner | None) -> bool:
    """True while the owner may still end its trace: its frame is running (on this thread's
    stack, or on its own thread's), or it belongs to another asyncio task that is not done.
    A generator's frame may be suspended anywhere, so it always counts as running."""
    if owner is None:
        return True
    frame, thread_id, task = owner
    if _on_stack(frame, sys._getframe(1)) or frame.f_code.co_flags & _SUSPENDABLE:
        return True
    if task is not None and task is not _current_task():
        return not task.done()
    if thread_id != threading.get_ident():
        return _on_stack(frame, sys._current_frames().get(thread_id))
    return False
