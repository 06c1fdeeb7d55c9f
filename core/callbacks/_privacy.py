"""What plugins may see of a payload: redaction hooks, hidden inputs and outputs, size limits.

The policy runs on the caller's thread, before any plugin (inline or background) sees an event.
It is built only when something is asked for (``hide_inputs``, ``hide_outputs``,
``max_payload_chars`` or a plugin implementing ``callbacks_redact``); otherwise the event path
never calls it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from types import MappingProxyType
from typing import Any

from .events import INPUT_KEYS, OUTPUT_KEYS, EventPayload, EventPhase, EventType

__all__ = ["HIDDEN", "METADATA_KEYS", "HiddenException", "PayloadPolicy", "limit_value"]

logger = logging.getLogger(__name__)

HIDDEN = "<hidden>"
REDACTION_FAILED = "<redaction failed>"
_MAX_DEPTH = 12

METADATA_KEYS: frozenset[str] = frozenset(
    k.value
    for k in (
        EventPayload.MODEL_NAME,
        EventPayload.EMBEDDING_MODEL_NAME,
        EventPayload.TOP_K,
        EventPayload.INVOCATION_PARAMETERS,
        EventPayload.USAGE,
        EventPayload.SCORES,
    )
)
"""Payload keys kept when inputs or outputs are hidden: non-content metadata (model names,
``top_k``, invocation parameters, token usage, scores). ``tool`` and ``tools`` are reduced to the
tool names. Every other value, whatever its key, is replaced by ``"<hidden>"``."""

_TOOL_KEYS = frozenset((EventPayload.TOOL.value, EventPayload.TOOLS.value))

Redactor = Callable[[EventType, EventPhase, Mapping[str, Any]], Any]
"""``(event_type, phase, payload) -> new payload or None``; see ``callbacks_redact``."""


class HiddenException(Exception):
    """Stands in for an application exception whose message must not reach plugins. Its class
    carries the original name (``type(e).__name__``), its message is hidden or truncated; the
    application's own exception object is never changed."""

    original_type: type[BaseException] = Exception


_stand_ins: dict[type[BaseException], type[HiddenException]] = {}


def _stand_in_class(original: type[BaseException]) -> type[HiddenException]:
    cls = _stand_ins.get(original)
    if cls is None:
        cls = type(
            original.__name__,
            (HiddenException,),
            {
                "__module__": original.__module__,
                "__qualname__": original.__qualname__,
                "original_type": original,
            },
        )
        _stand_ins[original] = cls
    return cls


def _exception_with_message(error: BaseException, message: str) -> BaseException:
    stand_in = _stand_in_class(type(error))(message)
    return stand_in.with_traceback(error.__traceback__)


def _tool_names(value: Any) -> Any:
    def name_of(tool: Any) -> str | None:
        for holder in (tool, _attr(tool, "metadata"), _attr(tool, "function")):
            name = _attr(holder, "name")
            if isinstance(name, str):
                return name
        return None

    if isinstance(value, (Sequence, Set)) and not isinstance(value, (str, bytes)):
        return [name_of(tool) or HIDDEN for tool in value]
    return name_of(value) or HIDDEN


def _attr(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _plain(value: Any) -> Any:
    """A rich object as plain data (a dict), or the object's type name; never calls ``str()``
    (which could drain a stream) and never iterates an iterator."""
    for dump in ("model_dump", "_asdict", "to_dict", "dict"):
        method = getattr(value, dump, None)
        if callable(method):
            try:
                data = method()
            except Exception:
                continue
            if isinstance(data, Mapping):
                return data
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict) and attrs:
        return {k: v for k, v in attrs.items() if not k.startswith("_")}
    return f"<{type(value).__name__}>"


def limit_value(value: Any, limit: int, _depth: int = 0) -> Any:
    """``value`` with no string longer than ``limit`` characters, at any depth. Plain values
    keep their shape (dicts, lists, tuples, sets); rich objects (chat messages, nodes,
    responses, models, dataclasses) become plain data first; iterators are recorded as their
    type name and never consumed; exceptions become a stand-in with a truncated message."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= limit else value[: max(0, limit - 1)] + "…"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:limit])
    if _depth >= _MAX_DEPTH:
        return f"<{type(value).__name__}>"
    depth = _depth + 1
    if isinstance(value, BaseException):
        return limit_exception(value, limit)
    if isinstance(value, Mapping):
        return {
            limit_value(getattr(k, "value", k), limit, depth)
            if isinstance(k, str)
            else k: limit_value(v, limit, depth)
            for k, v in value.items()
        }
    if type(value) in (list, tuple):
        return type(value)(limit_value(v, limit, depth) for v in value)
    if isinstance(value, (set, frozenset)):
        return [limit_value(v, limit, depth) for v in value]
    if isinstance(value, Iterator):
        return f"<{type(value).__name__}>"
    if isinstance(value, Sequence) and not hasattr(value, "_asdict"):
        return [limit_value(v, limit, depth) for v in value]
    return limit_value(_plain(value), limit, depth)


def limit_exception(error: BaseException, limit: int) -> BaseException:
    """``error`` itself when its message fits, else a stand-in with the message truncated."""
    try:
        message = str(error)
    except Exception:
        message = ""
    if len(message) <= limit:
        return error
    return _exception_with_message(error, limit_value(message, limit))


class PayloadPolicy:
    """Applies, in order: the redaction hooks, ``hide_inputs``/``hide_outputs``, and
    ``max_payload_chars``, to every payload and exception before plugins see them."""

    __slots__ = (
        "hide_exceptions",
        "hide_inputs",
        "hide_outputs",
        "limit",
        "on_error",
        "redactors",
        "shaping",
    )

    def __init__(
        self,
        *,
        hide_inputs: bool = False,
        hide_outputs: bool = False,
        max_payload_chars: int | None = None,
        redactors: Sequence[tuple[str, Redactor]] = (),
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.hide_inputs = hide_inputs
        self.hide_outputs = hide_outputs
        self.hide_exceptions = hide_inputs or hide_outputs
        self.limit = max_payload_chars
        self.shaping = bool(hide_inputs or hide_outputs or max_payload_chars)
        self.redactors = tuple(redactors)
        self.on_error = on_error

    @property
    def active(self) -> bool:
        """Whether applying the policy changes anything (else the event path skips it)."""
        return bool(self.hide_inputs or self.hide_outputs or self.limit or self.redactors)

    def payload(
        self, event_type: EventType, phase: EventPhase, payload: Mapping[Any, Any]
    ) -> Mapping[str, Any]:
        """The read-only payload plugins get for one start or end."""
        data: Mapping[Any, Any] = payload
        for name, redact in self.redactors:
            view = MappingProxyType(dict(data))  # the redactor cannot change the app's dict
            try:
                result = redact(event_type, phase, view)
            except Exception as error:
                # Fail closed: a payload that could not be scrubbed is not handed on.
                if self.on_error is not None:
                    self.on_error(name, error)
                return MappingProxyType(dict.fromkeys(data, REDACTION_FAILED))
            if result is not None:
                if not isinstance(result, Mapping):
                    if self.on_error is not None:
                        self.on_error(
                            name, TypeError(f"callbacks_redact returned {type(result).__name__}")
                        )
                    return MappingProxyType(dict.fromkeys(data, REDACTION_FAILED))
                data = result
            else:
                data = view
        if not self.shaping:
            return data if isinstance(data, MappingProxyType) else MappingProxyType(dict(data))
        hide_all = self.hide_inputs if phase is EventPhase.START else self.hide_outputs
        hide_known = self.hide_outputs if phase is EventPhase.START else self.hide_inputs
        known = OUTPUT_KEYS if phase is EventPhase.START else INPUT_KEYS
        limit = self.limit
        out: dict[str, Any] = {}
        for key, value in data.items():
            key = getattr(key, "value", key)
            if isinstance(value, BaseException):
                value = self.exception(value)
            elif hide_all or (hide_known and key in known):
                if key in _TOOL_KEYS:
                    value = _tool_names(value)
                elif key not in METADATA_KEYS:
                    out[key] = HIDDEN
                    continue
            if limit is not None:
                value = limit_value(value, limit)
            out[key] = value
        return MappingProxyType(out)

    def exception(self, error: BaseException) -> BaseException:
        """The exception plugins get: a stand-in with the message hidden (when inputs or
        outputs are hidden) or truncated (beyond ``max_payload_chars``)."""
        if self.hide_exceptions:
            return _exception_with_message(error, HIDDEN)
        if self.limit is not None:
            return limit_exception(error, self.limit)
        return error
