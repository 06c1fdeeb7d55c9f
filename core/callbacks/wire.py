"""The wire format: traces and events as plain data (JSON-ready dicts), version 1.

One record per trace and one per ended event, each a flat dict of strings, numbers, lists and
dicts only, so it survives JSON Lines files, SQLite columns and process boundaries. Payload
values are reduced with the readers of :mod:`callbacks.payloads`: nodes become
``{"id", "text", "score", "metadata"}``, chat messages ``{"role", "content", ...}``, exceptions
``{"type", "message", "traceback"}``, pydantic models their dump; anything else its ``str()``.
The format is documented in ``docs/trace-format.md``.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterable, Iterator, Mapping
from types import SimpleNamespace
from typing import Any

from .events import EventAbandoned, EventPayload, EventType
from .payloads import messages_of, model_of, nodes_of, to_jsonable, usage_of

__all__ = [
    "FORMAT",
    "VERSION",
    "RecordedError",
    "WireFormatError",
    "event_record",
    "event_start_record",
    "exception_from_record",
    "exception_record",
    "header_record",
    "parse_lines",
    "plain_payload",
    "to_plain",
    "trace_record",
]

FORMAT = "callbacks-trace"
"""The ``format`` field of the header record."""
VERSION = 1
"""The version of the record layout; readers reject a newer one."""

_TYPE_NAMES = {t: t.value for t in EventType}
_NODE_KEYS = frozenset((EventPayload.NODES.value, EventPayload.DOCUMENTS.value))
_MAX_DEPTH = 16


class WireFormatError(ValueError):
    """A line that is not a valid record; ``line`` is its 1-based number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


_ATOMS = frozenset((str, int, float, bool, type(None)))


def to_plain(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain data: ``None``, bools, numbers and strings as they are; mappings and
    sequences recursed; nodes, chat messages and exceptions in their documented shapes;
    pydantic models dumped; anything else ``str()``. Never raises."""
    # Exact built-in types first: they are nearly every value, and isinstance against the
    # abstract Mapping is slow (this runs for every value of every event sent to a sidecar).
    cls = type(value)
    if cls in _ATOMS:
        return value
    if _depth > _MAX_DEPTH:
        return str(value)
    if cls is dict:
        return _plain_mapping(value, _depth)
    if cls is list:
        return _plain_items(value, _depth)
    # A subclass of str, int or float (a str enum such as LlamaIndex's MessageRole, an IntEnum,
    # numpy.float64) as its plain value: pickled as itself, it would make the reader (the
    # sidecar) import the library that defined it.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return bool(value) if isinstance(value, bool) else int.__index__(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, BaseException):
        return exception_record(value)
    if isinstance(value, Mapping):
        return _plain_mapping(value, _depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        return _plain_items(value, _depth)
    if isinstance(value, SimpleNamespace):  # e.g. a usage object: its fields, not its repr
        return to_plain(vars(value), _depth + 1)
    try:
        if _is_node(value):
            return _node_dict(nodes_of([value])[0])
        if _is_message(value):
            return _message_dict(messages_of([value])[0])
    except Exception:
        return str(value)
    plain = to_plain(to_jsonable(value), _depth + 1)
    reply = getattr(value, "message", None)
    if type(plain) is dict and reply is not None and _is_message(reply):
        # A chat response: its message in the message shape, with its text under "content" (a
        # model dump keeps LlamaIndex's content blocks, which no payload reader understands).
        try:
            plain["message"] = _message_dict(messages_of([reply])[0])
        except Exception:
            pass
    return plain


def _plain_mapping(value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    return {
        (k if type(k) is str else str(getattr(k, "value", k))): to_plain(v, depth + 1)
        for k, v in value.items()
    }


def _plain_items(value: Iterable[Any], depth: int) -> list[Any]:
    return [to_plain(v, depth + 1) for v in value]


def _is_node(value: Any) -> bool:
    return hasattr(value, "node") or (
        hasattr(value, "node_id") and callable(getattr(value, "get_content", None))
    )


def _is_message(value: Any) -> bool:
    return hasattr(value, "role") and (hasattr(value, "content") or hasattr(value, "blocks"))


def _node_dict(node: Any) -> dict[str, Any]:
    return {
        "id": to_plain(node.id),
        "text": to_plain(node.text),
        "score": to_plain(node.score),
        "metadata": to_plain(dict(node.metadata)),
    }


def _message_dict(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"role": to_plain(message.role), "content": to_plain(message.content)}
    if message.tool_calls:
        out["tool_calls"] = to_plain(list(message.tool_calls))
    if message.name is not None:
        out["name"] = to_plain(message.name)
    if message.tool_call_id is not None:
        out["tool_call_id"] = to_plain(message.tool_call_id)
    return out


def plain_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A payload as plain data. Under ``nodes`` and ``documents`` every item becomes a node
    (with ``scores`` applied), under ``messages`` every item a message; other keys go through
    :func:`to_plain`."""
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if type(key) is not str:
            key = str(getattr(key, "value", key))
        try:
            if key in _NODE_KEYS and value is not None and not isinstance(value, str):
                out[key] = [
                    _node_dict(n) for n in nodes_of(value, payload.get(EventPayload.SCORES))
                ]
            elif key == EventPayload.MESSAGES and value is not None:
                out[key] = [_message_dict(m) for m in messages_of(value)]
            else:
                out[key] = to_plain(value)
        except Exception:
            out[key] = str(value)
    return out


def exception_record(error: BaseException) -> dict[str, Any]:
    """``{"type", "message", "traceback"}`` of an exception (the traceback as text, ``None``
    when it was never raised)."""
    tb = error.__traceback__
    return {
        "type": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(type(error), error, tb)) if tb else None,
    }


class RecordedError(Exception):
    """An exception rebuilt from its record by :func:`exception_from_record`: its class has the
    original's name, ``str()`` gives the original message, ``traceback_text`` the original
    traceback."""

    traceback_text: str | None = None


_rebuilt_classes: dict[tuple[type[RecordedError], str, str], type[RecordedError]] = {}


def exception_from_record(
    record: Any, base: type[RecordedError] = RecordedError, module: str | None = None
) -> BaseException | None:
    """The inverse of :func:`exception_record`: an instance of a subclass of ``base`` named like
    the original (one class per name, made once), or :class:`callbacks.EventAbandoned` for an
    abandoned event; ``None`` for no record. ``module`` names the module the class reports."""
    if not isinstance(record, Mapping) or not record:
        return None
    name = str(record.get("type") or "Exception")
    message = str(record.get("message") or "")
    if name == EventAbandoned.__name__:
        return EventAbandoned(message)
    key = (base, name, module or base.__module__)
    cls = _rebuilt_classes.get(key)
    if cls is None:
        cls = _rebuilt_classes[key] = type(name, (base,), {"__module__": key[2]})
    error = cls(message)
    error.traceback_text = record.get("traceback")
    return error


def header_record() -> dict[str, Any]:
    """The first record of a file: ``{"kind": "header", "format", "version"}``."""
    return {"kind": "header", "format": FORMAT, "version": VERSION}


def trace_record(trace: Any, *, status: str | None = None) -> dict[str, Any]:
    """The record of a :class:`callbacks.Trace` (ended or not). Times are wall-clock ns since the
    epoch."""
    return {
        "kind": "trace",
        "id": trace.id,
        "name": trace.name,
        "start_ns": trace.start_wall_time_ns,
        "end_ns": trace.end_wall_time_ns,
        "duration_ns": trace.duration_ns,
        "status": status or ("running" if trace.end_time_ns is None else "ok"),
        "attributes": to_plain(dict(trace.attributes)),
    }


def event_start_record(start: Any) -> dict[str, Any]:
    """The record of an event that started (kind ``event_start``): what a live consumer, such as
    the sidecar process, needs before the event ends. ``inputs`` is the start payload, plain."""
    return {
        "kind": "event_start",
        "id": start.id,
        "trace_id": start.trace_id,
        "parent_id": start.parent_id,
        "type": _TYPE_NAMES.get(start.type) or str(start.type),
        "start_ns": start.wall_time_ns,
        "inputs": plain_payload(start.payload),
        "thread_id": start.thread_id,
        "task_name": start.task_name,
    }


def event_record(
    end: Any, inputs: dict[str, Any] | None = None, *, derived: bool = True
) -> dict[str, Any]:
    """The record of one ended event, built from its end :class:`callbacks.Event` (whose
    ``start`` carries the inputs). ``inputs`` is the start payload, ``outputs`` the end payload,
    both plain; ``usage`` and ``model`` are read out for LLM and embedding events. Pass
    ``inputs`` when the start payload was already converted (for its ``event_start`` record);
    ``derived=False`` leaves ``usage`` and ``model`` null (a live consumer reads the payload)."""
    start = end.start
    if inputs is None:
        inputs = plain_payload(start.payload) if start is not None else {}
    outputs = plain_payload(end.payload)
    usage = model = None
    if derived:
        full = end.full_payload
        try:
            found = usage_of(full)
            if found is not None:
                usage = {
                    "prompt": found.prompt,
                    "completion": found.completion,
                    "total": found.total,
                }
            model = model_of(full)
        except Exception:
            model = None
    duration = end.duration_ns or 0
    return {
        "kind": "event",
        "id": end.id,
        "trace_id": end.trace_id,
        "parent_id": end.parent_id,
        "type": _TYPE_NAMES.get(end.type) or str(end.type),
        "start_ns": end.wall_time_ns - duration,
        "end_ns": end.wall_time_ns,
        "duration_ns": duration,
        "inputs": inputs,
        "outputs": outputs,
        "usage": usage,
        "model": model,
        "exception": exception_record(end.exception) if end.exception is not None else None,
        "thread_id": end.thread_id,
        "task_name": end.task_name,
    }


def parse_lines(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | WireFormatError]]:
    """Parse JSON Lines: ``(line number, record)`` for each good record and
    ``(line number, WireFormatError)`` for each bad one, so a reader can report a bad line and
    keep the rest. Blank lines are skipped; a header with another format or a newer version is
    an error."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, WireFormatError(number, f"not JSON ({error.msg})")
            continue
        problem = _problem(record)
        yield number, (WireFormatError(number, problem) if problem else record)


_REQUIRED = {
    "trace": ("id", "name"),
    "event": ("id", "trace_id", "parent_id", "type"),
}


def _problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    kind = record.get("kind")
    if kind == "header":
        if record.get("format") != FORMAT:
            return f"format {record.get('format')!r} is not {FORMAT!r}"
        version = record.get("version")
        if not isinstance(version, int) or version > VERSION:
            return f"version {version!r} is not supported (this reader knows up to {VERSION})"
        return None
    if kind not in _REQUIRED:
        return f"kind {kind!r} is not one of 'header', 'trace', 'event'"
    missing = [key for key in _REQUIRED[kind] if not isinstance(record.get(key), str)]
    if missing:
        return f"{kind} record without {', '.join(missing)}"
    return None
