"""The sidecar process: runs the plugins that asked for ``process`` delivery.

Started by the application's host (:mod:`._process_channel`) as
``python -m callbacks._sidecar FD``, where FD is one end of a socket pair. It builds its own
:class:`CallbackManager` with the application's host settings, loads each plugin the application
registers (the same class or module, configured from the same sources) and calls its hooks
with events rebuilt from wire records, so payloads are plain data that
:mod:`callbacks.payloads` reads. It acknowledges every batch with the number of events handled
and each plugin's counters, answers flush, stats and unregister requests in stream order, and
shuts its plugins down when asked to exit or when the application's end of the socket closes
(the application exited or was killed).
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys
from collections.abc import Mapping
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any

from ._manager import CallbackManager, dispatcher_of
from ._process_channel import mark_sidecar
from ._trace import Trace
from .events import (
    _MONO_ANCHOR_NS,
    _WALL_ANCHOR_NS,
    EMPTY_PAYLOAD,
    Event,
    EventPayload,
    EventPhase,
    EventType,
)
from .wire import VERSION, RecordedError, exception_from_record, to_plain

__all__ = ["main"]

_START = EventPhase.START
_END = EventPhase.END
_MAX_OPEN = 100_000
_EXCEPTION_KEY = EventPayload.EXCEPTION.value


def _mono(wall_ns: int | None) -> int:
    """This process's monotonic reading for a wall-clock time (the app's clock differs)."""
    return (wall_ns or _WALL_ANCHOR_NS) - _WALL_ANCHOR_NS + _MONO_ANCHOR_NS


def _payload(plain: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not plain:
        return EMPTY_PAYLOAD
    payload = dict(plain)
    error = payload.get(_EXCEPTION_KEY)
    if isinstance(error, dict) and "type" in error and "message" in error:
        payload[_EXCEPTION_KEY] = _exception(error)  # an exception again, as in the app
    return MappingProxyType(payload)


class RemoteError(RecordedError):
    """An exception raised in the application, rebuilt from its wire record: its class has the
    original's name, ``str()`` gives the original message, ``traceback_text`` the text."""


def _exception(record: Mapping[str, Any] | None) -> BaseException | None:
    return exception_from_record(record, RemoteError, "callbacks.remote")


def _load(spec: tuple[str, str]) -> Any:
    kind, where = spec
    if kind == "module":
        return importlib.import_module(where)
    module_name, _, qualname = where.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


class Sidecar:
    """Rebuilds events and traces from wire records and delivers them to its manager's
    plugins."""

    def __init__(self, manager: CallbackManager) -> None:
        self.manager = manager
        self.dispatcher = dispatcher_of(manager)
        self.traces: dict[str, Trace] = {}
        self.starts: dict[str, Event] = {}
        self.handled = 0

    def record(self, record: Mapping[str, Any]) -> None:
        kind = record["kind"]
        if kind == "event_start":
            start = self._start(record)
            starts = self.starts
            if len(starts) >= _MAX_OPEN:
                starts.pop(next(iter(starts)))
            starts[start[0]] = start
            self._deliver(start, 0)
        elif kind == "event":
            known = self.starts.pop(record["id"], None)
            start = known if known is not None else self._start(record)
            end_ns = _mono(record["end_ns"])
            end = Event(
                record["id"],
                start[1],
                _END,
                record["trace_id"],
                record["parent_id"],
                end_ns,
                _payload(record["outputs"]),
                end_ns - start[5],
                _exception(record["exception"]),
                record["thread_id"],
                record["task_name"],
                start,
            )
            self._deliver(end, 1)
        elif kind == "trace":
            self._trace(record)
        self.handled += 1

    def _start(self, record: Mapping[str, Any]) -> Event:
        return Event(
            record["id"],
            EventType(record["type"]),
            _START,
            record["trace_id"],
            record["parent_id"],
            _mono(record["start_ns"]),
            _payload(record["inputs"]),
            None,
            None,
            record["thread_id"],
            record["task_name"],
            None,
        )

    def _deliver(self, event: Event, phase: int) -> None:
        routes = self.dispatcher.routes[event[1]]
        if routes is not None:
            self.dispatcher.deliver(routes[phase], event)

    def _trace(self, record: Mapping[str, Any]) -> None:
        trace_id = record["id"]
        starting = record["status"] == "running"
        trace = self.traces.pop(trace_id, None) if not starting else None
        if trace is None:
            trace = Trace(
                record["name"],
                _mono(record["start_ns"]),
                trace_id=trace_id,
                implicit=bool(record.get("implicit")),
            )
            trace._attributes = MappingProxyType(dict(record.get("attributes") or {}))
        if starting:
            if len(self.traces) >= _MAX_OPEN:
                self.traces.pop(next(iter(self.traces)))
            self.traces[trace_id] = trace
            self.dispatcher.deliver(self.dispatcher.trace_routes[0], trace)
            return
        trace._end_time_ns = _mono(record["end_ns"])
        trace._map = {k: list(v) for k, v in (record.get("trace_map") or {}).items()}
        trace._durations = {
            EventType(k): list(v) for k, v in (record.get("durations_ns") or {}).items()
        }
        self.dispatcher.deliver(self.dispatcher.trace_routes[1], trace)

    def counts(self) -> dict[str, tuple[int, int]]:
        return {
            name: (channel.delivered, channel.errors)
            for name, channel in self.manager._registry.channels.items()
        }

    def request(self, kind: str, args: tuple[Any, ...]) -> Any:
        manager = self.manager
        if kind == "register":
            name, spec, section = args
            try:
                manager.config.sections[name.lower()] = dict(section)
                manager.register(_load(spec), name)
            except Exception as error:
                return f"{type(error).__name__}: {error}"
            return "ok" if manager._registry.channels[name].listening else "off"
        if kind == "flush":
            name, timeout = args
            return manager.flush(timeout, plugin=name)
        if kind == "stats":
            return to_plain(manager.stats())
        if kind == "unregister":  # answers the plugin's last stats, taken after its shutdown
            name, timeout = args
            channel = manager._registry.channels.get(name)
            manager.unregister(name, timeout)
            return to_plain(channel.stats()) if channel is not None else {}
        if kind == "exit":
            return manager.shutdown()
        return None


def serve(conn: Connection) -> int:
    """Answer the application until it asks to exit or its end of the socket closes."""
    kind, version, host, path = conn.recv()
    if kind != "hello" or version != VERSION:
        return 2
    for entry in reversed(path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    sidecar = Sidecar(CallbackManager(config=host))
    conn.send(("ready", os.getpid()))
    try:
        while True:
            try:
                batch = pickle.loads(conn.recv_bytes())
            except EOFError:
                break
            for entry in batch:
                if type(entry) is dict:
                    sidecar.record(entry)
                    continue
                request, token, *args = entry
                result = sidecar.request(request, tuple(args))
                conn.send(("ack", sidecar.handled, sidecar.counts()))
                conn.send(("reply", token, result))
                if request == "exit":
                    return 0
            conn.send(("ack", sidecar.handled, sidecar.counts()))
    except (OSError, EOFError):
        pass
    sidecar.manager.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m callbacks._sidecar FD``."""
    argv = sys.argv[1:] if argv is None else argv
    # The app decides when to stop: the terminal's Ctrl-C (or a signal sent to the group) must
    # not kill the sidecar before the app's exit flush reaches it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mark_sidecar()
    return serve(Connection(int(argv[0])))


if __name__ == "__main__":
    sys.exit(main())
