"""Report every Anthropic SDK request to ``callbacks``, without touching the application's code::

    import callbacks.integrations.anthropic as callbacks_anthropic
    callbacks_anthropic.instrument()   # idempotent; callbacks_anthropic.uninstrument() undoes it

(or set ``instrument = ["anthropic"]`` / ``CALLBACKS_INSTRUMENT=anthropic``).
``messages.create`` (plain or ``stream=True``), ``messages.parse`` and ``messages.stream(...)``,
on the sync and async clients, become LLM events in the current trace or an implicit one of
their own. ``messages.stream(...)`` starts its event when its ``with`` block is entered, which is
when the SDK sends the request.

Payloads (plain keys, read them with :mod:`callbacks.payloads`):

- start: ``messages`` (the ``system`` prompt as a system message, then the messages as sent, with
  their content blocks), ``model_name`` (as requested), ``tools``, ``invocation_parameters``
  (``max_tokens``, ``temperature``...).
- end: ``response`` = ``{"message": {"role": "assistant", "content", "tool_calls"}, "raw": ...,
  "finish_reason"}`` where ``tool_calls`` are the ``tool_use`` blocks in OpenAI's shape (``id``,
  ``function.name``, ``function.arguments`` as JSON) and ``raw`` is the SDK's ``Message`` (for a
  stream, a dict of the same shape assembled from the events), ``usage`` (the provider's usage
  as a dict: ``input_tokens``, ``output_tokens``, ``cache_read_input_tokens``,
  ``cache_creation_input_tokens``; for a stream, ``message_start``'s updated by
  ``message_delta``'s), ``model_name`` (as answered), ``request_id``; streams add
  ``time_to_first_token_ns`` and ``stream_end``.
- a failed request ends with the SDK's exception (``status_code``, ``request_id``, ``body``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from .._manager import CallbackManager
from ..events import EventPayload, EventType
from . import _sdk
from ._sdk import StreamAccumulator, get, given, parameters, plain

__all__ = ["instrument", "instrumented", "uninstrument"]

_P = EventPayload
_REQUEST_ID_HEADER = "request-id"


def _start(kwargs: dict[str, Any]) -> dict[str, Any]:
    messages: list[Any] = []
    system = kwargs.get("system")
    if given(system):
        messages.append({"role": "system", "content": system})
    sent: Any = kwargs.get("messages")
    if given(sent):
        if not isinstance(sent, (list, tuple)):
            sent = kwargs["messages"] = list(sent)
        messages.extend(sent)
    payload: dict[str, Any] = {
        _P.MESSAGES.value: messages,
        _P.MODEL_NAME.value: kwargs.get("model"),
        _P.INVOCATION_PARAMETERS.value: parameters(
            kwargs, frozenset({"messages", "system", "tools"})
        ),
    }
    tools: Any = kwargs.get("tools")
    if given(tools):
        if not isinstance(tools, (list, tuple)):
            tools = kwargs["tools"] = list(tools)
        payload[_P.TOOLS.value] = tools
    return payload


def _request_id(result: Any) -> str | None:
    request_id = getattr(result, "_request_id", None)
    if request_id:
        return str(request_id)
    response = getattr(result, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get(_REQUEST_ID_HEADER) if headers is not None else None
    return str(value) if value else None


def _assistant(blocks: Any) -> dict[str, Any]:
    """An assistant message from content blocks: text joined, ``tool_use`` blocks as tool calls."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks or ():
        kind = get(block, "type")
        if kind == "text":
            texts.append(get(block, "text") or "")
        elif kind in ("tool_use", "server_tool_use"):
            arguments = get(block, "input")
            calls.append(
                {
                    "id": get(block, "id"),
                    "type": "function",
                    "function": {
                        "name": get(block, "name"),
                        "arguments": arguments
                        if isinstance(arguments, str)
                        else json.dumps(plain(arguments)),
                    },
                }
            )
    return {"role": "assistant", "content": "".join(texts), "tool_calls": calls}


def _end(result: Any) -> dict[str, Any]:
    blocks = get(result, "content")
    if blocks is None:
        return {}
    response = {
        "message": _assistant(blocks),
        "raw": result,
        "finish_reason": get(result, "stop_reason"),
    }
    payload: dict[str, Any] = {
        _P.RESPONSE.value: response,
        _P.MODEL_NAME.value: get(result, "model"),
    }
    usage = get(result, "usage")
    if usage is not None:
        payload[_P.USAGE.value] = plain(usage)
    request_id = _request_id(result)
    if request_id:
        payload[_P.REQUEST_ID.value] = request_id
    return payload


class _MessageStream(StreamAccumulator):
    """Assembles the raw stream events (``message_start``, ``content_block_*``,
    ``message_delta``) into a message; the helper events ``messages.stream`` adds are ignored."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.message: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json: dict[int, list[str]] = {}
        self.usage: dict[str, Any] | None = None

    def add(self, event: Any) -> None:
        kind = get(event, "type")
        if kind == "message_start":
            message = plain(get(event, "message"))
            if isinstance(message, dict):
                self.message = {k: v for k, v in message.items() if k not in ("content", "usage")}
                usage = message.get("usage")
                self.usage = dict(usage) if isinstance(usage, dict) else self.usage
        elif kind == "content_block_start":
            block = plain(get(event, "content_block"))
            self.blocks[get(event, "index", len(self.blocks))] = (
                dict(block) if isinstance(block, dict) else {}
            )
        elif kind == "content_block_delta":
            index = get(event, "index", 0)
            delta = get(event, "delta")
            delta_type = get(delta, "type")
            if self.first_token_ns is None:
                self.first_token_ns = time.monotonic_ns()
            block = self.blocks.setdefault(index, {"type": "text", "text": ""})
            if delta_type == "text_delta":
                block["text"] = (block.get("text") or "") + (get(delta, "text") or "")
            elif delta_type == "input_json_delta":
                self.json.setdefault(index, []).append(get(delta, "partial_json") or "")
            elif delta_type == "thinking_delta":
                block["thinking"] = (block.get("thinking") or "") + (get(delta, "thinking") or "")
        elif kind == "message_delta":
            delta = plain(get(event, "delta"))
            if isinstance(delta, dict):
                self.message.update({k: v for k, v in delta.items() if v is not None})
            usage = plain(get(event, "usage"))
            if isinstance(usage, dict):
                merged = dict(self.usage or {})
                merged.update({k: v for k, v in usage.items() if v is not None})
                self.usage = merged

    def _content(self) -> list[dict[str, Any]]:
        content = []
        for index in sorted(self.blocks):
            block = dict(self.blocks[index])
            parts = self.json.get(index)
            if parts is not None:
                text = "".join(parts)
                try:
                    block["input"] = json.loads(text) if text else {}
                except ValueError:
                    block["input"] = text  # cut short: keep what arrived
            content.append(block)
        return content

    def payload(self) -> dict[str, Any]:
        raw = {**self.message, "content": self._content(), "usage": self.usage}
        response = {
            "message": _assistant(raw["content"]),
            "raw": raw,
            "finish_reason": raw.get("stop_reason"),
        }
        payload: dict[str, Any] = {
            _P.RESPONSE.value: response,
            _P.MODEL_NAME.value: raw.get("model"),
        }
        if self.usage is not None:
            payload[_P.USAGE.value] = self.usage
        return payload


def _streamed(kwargs: dict[str, Any], result: Any) -> bool:
    return kwargs.get("stream") is True


_CREATE = _sdk.CallSpec(EventType.LLM, _start, _end, _MessageStream, _streamed, _request_id)
_STREAM = _sdk.CallSpec(
    EventType.LLM, _start, _end, _MessageStream, lambda kwargs, result: True, _request_id
)


def _targets() -> list[tuple[Any, str, _sdk.CallSpec, str]]:
    from anthropic.resources import messages

    targets: list[tuple[Any, str, _sdk.CallSpec, str]] = []
    for owner in (messages.Messages, messages.AsyncMessages):
        targets.append((owner, "create", _CREATE, "method"))
        if "parse" in owner.__dict__:
            targets.append((owner, "parse", _CREATE, "method"))
        if "stream" in owner.__dict__:
            targets.append((owner, "stream", _STREAM, "stream_manager"))
    return targets


_instrumentor = _sdk.Instrumentor("anthropic", _targets)


def instrument(manager: CallbackManager | None = None) -> None:
    """Report every Anthropic SDK request to ``manager`` (``None``: the process-wide
    :func:`callbacks.get_manager`, resolved at each request). Idempotent: a second call only
    changes the manager. Raises ``ImportError`` when ``anthropic`` is not installed."""
    _instrumentor.instrument(manager)


def uninstrument() -> None:
    """Put the SDK's own methods back (the very same function objects)."""
    _instrumentor.uninstrument()


def instrumented() -> bool:
    """True while the Anthropic SDK is instrumented."""
    return _instrumentor.instrumented
