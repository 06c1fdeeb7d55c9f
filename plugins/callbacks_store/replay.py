"""Replay exported traces into the active plugins through the host's public API."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callbacks import EventType, using_attributes
from callbacks.wire import RecordedError, exception_from_record

if TYPE_CHECKING:
    from callbacks import CallbackManager

__all__ = ["ReplayResult", "ReplayedError", "replay"]

REPLAYED_KEY = "replayed"
"""Start-payload key (``True``) and trace attribute that mark what a replay emitted."""


class ReplayedError(RecordedError):
    """Base of the exceptions a replay attaches to failed events. Each original exception type
    gets a subclass of the same name; ``traceback_text`` holds the original traceback."""


@dataclass
class ReplayResult:
    """What a replay emitted."""

    traces: int = 0
    events: int = 0


def replay(
    records: Iterable[Mapping[str, Any]],
    manager: CallbackManager,
    *,
    speed: float | None = 1.0,
) -> ReplayResult:
    """Re-emit traces (wire-format records, as :func:`callbacks.wire.parse_lines` yields them)
    into ``manager``'s plugins, one trace after another, with the original trace and event ids,
    parents, names, attributes and payloads. Each trace gets the attributes ``replayed=True``
    and ``original_start_ns``; each event's start payload gets ``replayed: True``.

    With ``speed`` (1.0: real time), starts and ends are paced to the original offsets within
    each trace, so durations come out as recorded plus the host's own latency; with ``None``
    they follow one another at once (order and nesting kept, durations near zero). The host
    stamps times itself, so original wall-clock start times are carried only in
    ``original_start_ns``."""
    traces: dict[str, Mapping[str, Any]] = {}
    events: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        kind = record.get("kind")
        if kind == "trace":
            traces[record["id"]] = record
            events.setdefault(record["id"], [])
        elif kind == "event":
            events.setdefault(record["trace_id"], []).append(record)
    result = ReplayResult()
    for trace_id, trace_events in events.items():
        trace = traces.get(trace_id, {"id": trace_id, "name": "trace", "attributes": {}})
        # A fresh context: the replayed trace never joins a trace active in the caller.
        contextvars.Context().run(_replay_trace, manager, trace, trace_events, speed)
        result.traces += 1
        result.events += len(trace_events)
    return result


def _replay_trace(
    manager: CallbackManager,
    trace: Mapping[str, Any],
    events: list[Mapping[str, Any]],
    speed: float | None,
) -> None:
    attributes = dict(trace.get("attributes") or {})
    attributes[REPLAYED_KEY] = True
    attributes["original_start_ns"] = trace.get("start_ns")
    with using_attributes(**attributes):
        manager.start_trace(str(trace.get("name") or "trace"), trace_id=str(trace["id"]))
        try:
            _emit(manager, events, trace.get("start_ns"), speed)
        finally:
            manager.end_trace()


def _emit(
    manager: CallbackManager,
    events: list[Mapping[str, Any]],
    trace_start_ns: int | None,
    speed: float | None,
) -> None:
    depth = _depths(events)
    steps: list[tuple[int, int, int, Mapping[str, Any]]] = []
    for record in events:
        start = int(record.get("start_ns") or 0)
        end = int(record.get("end_ns") or start)
        steps.append((start, 0, depth[record["id"]], record))
        steps.append((end, 1, -depth[record["id"]], record))
    steps.sort(key=lambda s: s[:3])
    origin = trace_start_ns if trace_start_ns is not None else (steps[0][0] if steps else 0)
    began = time.perf_counter_ns()
    for at, phase, _, record in steps:
        if speed:
            wait_ns = (at - origin) / speed - (time.perf_counter_ns() - began)
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)  # pacing the replay, not synchronisation
        event_type = _event_type(record.get("type"))
        if phase == 0:
            payload = {**(record.get("inputs") or {}), REPLAYED_KEY: True}
            manager.on_event_start(
                event_type, payload, event_id=record["id"], parent_id=record["parent_id"]
            )
        else:
            manager.on_event_end(
                event_type,
                record.get("outputs") or None,
                event_id=record["id"],
                exception=_exception(record.get("exception")),
            )


def _depths(events: list[Mapping[str, Any]]) -> dict[str, int]:
    parents = {r["id"]: r["parent_id"] for r in events}
    depths: dict[str, int] = {}
    for event_id in parents:
        seen, node, depth = set(), event_id, 0
        while node in parents and node not in seen:
            seen.add(node)
            node = parents[node]
            depth += 1
        depths[event_id] = depth
    return depths


def _event_type(value: Any) -> EventType:
    try:
        return EventType(value)
    except ValueError:
        return EventType.CHAIN  # a type this host does not know: the generic step


def _exception(record: Any) -> BaseException | None:
    return exception_from_record(record, ReplayedError, __name__)
