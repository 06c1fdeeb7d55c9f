"""The ``debug`` plugin: prints each trace's tree and keeps recent events for inspection."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, TextIO

from callbacks import Event, EventType, hookimpl

from .render import render_plain, render_rich
from .settings import DebugSettings
from .store import EventStore, EventTimeInfo, TraceLog, time_info

if TYPE_CHECKING:
    from callbacks import CallbackManager, Trace

__all__ = ["DebugPlugin"]


class DebugPlugin:
    """LlamaIndex's LlamaDebugHandler as a plugin: prints the tree of every trace when it ends
    (rich on a terminal, plain text otherwise) and keeps the events of the last ``max_traces``
    traces, so memory stays bounded. Every reader first waits for the plugin's queue to drain."""

    callbacks_name = "debug"
    callbacks_delivery = "background"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        """Where trees are printed; ``None`` means ``sys.stdout`` at the time of printing."""
        self._settings = DebugSettings()
        self._manager: CallbackManager | None = None
        self._lock = threading.Lock()
        self._store = EventStore(self._settings.max_traces, self._settings.max_events_per_trace)

    # -- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def callbacks_settings(self) -> type[DebugSettings]:
        """The ``[debug]`` section's model."""
        return DebugSettings

    @hookimpl
    def callbacks_configure(self, settings: DebugSettings | None, manager: CallbackManager) -> None:
        """Keep the settings, and the manager used to flush before reading."""
        if settings is not None:
            self._settings = settings
            self._store = EventStore(settings.max_traces, settings.max_events_per_trace)
        self._manager = manager

    @hookimpl
    def callbacks_after_fork_in_child(self) -> None:
        """A lock that another thread held at the fork stays held in the child: start afresh."""
        self._lock = threading.Lock()

    @hookimpl
    def on_trace_start(self, trace: Trace) -> None:
        """Open the trace's log."""
        with self._lock:
            self._store.start_trace(trace)

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        """Keep the start."""
        with self._lock:
            self._store.add(event)

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        """Keep the end."""
        with self._lock:
            self._store.add(event)

    @hookimpl
    def on_trace_end(self, trace: Trace) -> None:
        """Print the trace's tree (unless ``print_trace`` is off)."""
        with self._lock:
            log = self._store.end_trace(trace)
        if self._settings.print_trace:
            self.print_trace(log)

    # -- printing ------------------------------------------------------------------------------

    def print_trace(self, log: TraceLog) -> None:
        """Print one trace's tree to :attr:`stream`."""
        stream = self.stream if self.stream is not None else sys.stdout
        use_rich = self._settings.rich
        if use_rich is None:
            isatty = getattr(stream, "isatty", None)
            use_rich = bool(isatty and isatty())
        limit = self._settings.summary_chars
        if use_rich:
            render_rich(log, limit, stream)
        else:
            stream.write(render_plain(log, limit, _terminal_width(stream)))
        stream.flush()

    # -- reading -------------------------------------------------------------------------------

    def _sync(self) -> None:
        if self._manager is not None:
            self._manager.flush(plugin=self)

    def get_events(self, type: EventType | None = None) -> list[Event]:
        """Kept start and end events (of one type, if given), in time order."""
        self._sync()
        with self._lock:
            return self._store.events(type)

    def get_event_pairs(self, type: EventType | None = None) -> list[tuple[Event, Event]]:
        """(start, end) of each finished kept event (of one type, if given), in start order."""
        self._sync()
        with self._lock:
            return self._store.pairs(type)

    def get_llm_inputs_outputs(self) -> list[tuple[Event, Event]]:
        """(start, end) of each finished LLM call: prompts or messages, then completions."""
        return self.get_event_pairs(EventType.LLM)

    def get_event_time_info(self, type: EventType) -> EventTimeInfo:
        """Count, total, mean, p50 and p95 duration (seconds) of the kept events of ``type``."""
        self._sync()
        with self._lock:
            return time_info(self._store.durations_ns(type))

    def flush_event_logs(self) -> None:
        """Forget every kept trace and event."""
        self._sync()
        with self._lock:
            self._store.clear()

    @property
    def traces(self) -> list[TraceLog]:
        """The ended traces still kept (at most ``max_traces``), oldest first."""
        self._sync()
        with self._lock:
            return [log for log in self._store.logs() if log.ended]


def _terminal_width(stream: TextIO) -> int | None:
    """The terminal's width when ``stream`` is one (files and pipes get whole lines)."""
    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()):
        return None
    import shutil

    return shutil.get_terminal_size().columns
