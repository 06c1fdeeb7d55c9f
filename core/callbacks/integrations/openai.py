"""Report every OpenAI SDK request to ``callbacks``, without touching the application's code::

    import callbacks.integrations.openai as callbacks_openai
    callbacks_openai.instrument()          # idempotent; callbacks_openai.uninstrument() undoes it

(or set ``instrument = ["openai"]`` / ``CALLBACKS_INSTRUMENT=openai``). Chat completions and the
Responses API (``create`` and ``parse``, sync and async clients, streamed or not) become LLM
events, embeddings EMBEDDING events, in the current trace or an implicit one of their own.

Payloads (plain keys, read them with :mod:`callbacks.payloads`):

- start: ``messages`` (the chat messages as sent; for the Responses API the ``instructions`` as
  a system message followed by the ``input`` items), ``model_name`` (as requested), ``tools``,
  ``invocation_parameters`` (every other argument: temperature, max tokens, ``stream``...);
  embeddings: ``chunks`` (the input texts), ``embedding_model_name``, ``invocation_parameters``.
- end: ``response`` = ``{"message": {"role": "assistant", "content", "tool_calls"}, "raw": ...,
  "finish_reason"}`` where ``raw`` is the SDK's response object (for a stream, a dict of the same
  shape assembled from the chunks), ``usage`` (the provider's usage, as a dict, with
  ``prompt_tokens_details.cached_tokens`` and ``completion_tokens_details.reasoning_tokens`` when
  sent), ``model_name`` (as answered), ``request_id``; streams add ``time_to_first_token_ns`` and
  ``stream_end``; embeddings end with ``embeddings`` and ``usage``.
- a failed request ends with the SDK's exception (``status_code``, ``type``, ``request_id``).

A request made directly inside an LLM (embedding) event that a framework bridge already
reported, such as LlamaIndex's or LangChain's OpenAI model, is not reported a second time.
"""

from __future__ import annotations

import time
from typing import Any

from .._manager import CallbackManager
from ..events import EventPayload, EventType
from . import _sdk
from ._sdk import StreamAccumulator, get, given, parameters, plain

__all__ = ["instrument", "instrumented", "uninstrument"]

_P = EventPayload
_REQUEST_ID_HEADER = "x-request-id"


# -- chat completions ----------------------------------------------------------------------------


def _materialized(kwargs: dict[str, Any], key: str) -> Any:
    """``kwargs[key]`` as a list when it is a one-shot iterable (given to the SDK as that list,
    so reading it here does not consume the application's iterator)."""
    value = kwargs.get(key)
    if value is not None and not isinstance(value, (list, tuple, str, dict)) and given(value):
        value = list(value)
        kwargs[key] = value
    return value


def _chat_start(kwargs: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        _P.MESSAGES.value: _materialized(kwargs, "messages"),
        _P.MODEL_NAME.value: kwargs.get("model"),
        _P.INVOCATION_PARAMETERS.value: parameters(kwargs, frozenset({"messages", "tools"})),
    }
    tools = _materialized(kwargs, "tools")
    if given(tools):
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


def _tool_call(call: Any) -> dict[str, Any]:
    function = get(call, "function")
    return {
        "id": get(call, "id"),
        "type": get(call, "type") or "function",
        "function": {"name": get(function, "name"), "arguments": get(function, "arguments")},
    }


def _reply(response: Any, raw: Any, model: Any, usage: Any, request_id: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {_P.RESPONSE.value: response, _P.MODEL_NAME.value: model}
    if usage is not None:
        payload[_P.USAGE.value] = plain(usage)
    if request_id:
        payload[_P.REQUEST_ID.value] = request_id
    return payload


def _chat_end(result: Any) -> dict[str, Any]:
    choices = get(result, "choices")
    if choices is None:
        return {}
    choice = choices[0] if choices else None
    message = get(choice, "message")
    assistant = {
        "role": "assistant",
        "content": get(message, "content") or "",
        "tool_calls": [_tool_call(c) for c in get(message, "tool_calls") or ()],
    }
    response = {
        "message": assistant,
        "raw": result,
        "finish_reason": get(choice, "finish_reason"),
    }
    return _reply(response, result, get(result, "model"), get(result, "usage"), _request_id(result))


class _ChatStream(StreamAccumulator):
    """Assembles ``chat.completion.chunk`` objects (first choice) into a completion."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.model: Any = None
        self.id: Any = None
        self.usage: Any = None
        self.finish_reason: Any = None

    def add(self, chunk: Any) -> None:
        self.id = self.id or get(chunk, "id")
        self.model = self.model or get(chunk, "model")
        usage = get(chunk, "usage")
        if usage is not None:
            self.usage = plain(usage)
        for choice in get(chunk, "choices") or ():
            if get(choice, "index", 0) != 0:
                continue
            delta = get(choice, "delta")
            content = get(delta, "content")
            calls = get(delta, "tool_calls")
            if (content or calls) and self.first_token_ns is None:
                self.first_token_ns = time.monotonic_ns()
            if content:
                self.text.append(content)
            for call in calls or ():
                entry = self.calls.setdefault(
                    get(call, "index", len(self.calls)),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if get(call, "id"):
                    entry["id"] = get(call, "id")
                function = get(call, "function")
                entry["function"]["name"] += get(function, "name") or ""
                entry["function"]["arguments"] += get(function, "arguments") or ""
            if get(choice, "finish_reason"):
                self.finish_reason = get(choice, "finish_reason")

    def payload(self) -> dict[str, Any]:
        message = {
            "role": "assistant",
            "content": "".join(self.text),
            "tool_calls": [self.calls[i] for i in sorted(self.calls)],
        }
        raw = {
            "id": self.id,
            "object": "chat.completion",
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }
        response = {"message": message, "raw": raw, "finish_reason": self.finish_reason}
        return _reply(response, raw, self.model, self.usage, None)


def _streamed(kwargs: dict[str, Any], result: Any) -> bool:
    return kwargs.get("stream") is True


# -- the Responses API ---------------------------------------------------------------------------


def _responses_start(kwargs: dict[str, Any]) -> dict[str, Any]:
    messages: list[Any] = []
    instructions = kwargs.get("instructions")
    if given(instructions):
        messages.append({"role": "system", "content": instructions})
    items = _materialized(kwargs, "input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif given(items):
        messages.extend(items)
    payload: dict[str, Any] = {
        _P.MESSAGES.value: messages,
        _P.MODEL_NAME.value: kwargs.get("model"),
        _P.INVOCATION_PARAMETERS.value: parameters(
            kwargs, frozenset({"input", "instructions", "tools"})
        ),
    }
    tools = _materialized(kwargs, "tools")
    if given(tools):
        payload[_P.TOOLS.value] = tools
    return payload


def _output_message(output: Any) -> dict[str, Any]:
    """The assistant message of a Responses API ``output`` list: its text and function calls."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in output or ():
        kind = get(item, "type")
        if kind == "message":
            for part in get(item, "content") or ():
                if get(part, "type") == "output_text":
                    texts.append(get(part, "text") or "")
        elif kind == "function_call":
            calls.append(
                {
                    "id": get(item, "call_id") or get(item, "id"),
                    "type": "function",
                    "function": {"name": get(item, "name"), "arguments": get(item, "arguments")},
                }
            )
    return {"role": "assistant", "content": "".join(texts), "tool_calls": calls}


def _responses_end(result: Any, request_id: Any = None) -> dict[str, Any]:
    output = get(result, "output")
    if output is None:
        return {}
    response = {
        "message": _output_message(output),
        "raw": result,
        "finish_reason": get(result, "status"),
    }
    return _reply(
        response,
        result,
        get(result, "model"),
        get(result, "usage"),
        request_id or _request_id(result),
    )


class _ResponsesStream(StreamAccumulator):
    """Assembles Responses API stream events; ``response.completed`` carries the whole reply."""

    _FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
    _TOKENS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta"})

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.final: Any = None
        self.model: Any = None
        self.text: list[str] = []
        self.items: list[Any] = []

    def add(self, event: Any) -> None:
        kind = get(event, "type")
        if kind in self._TOKENS and self.first_token_ns is None:
            self.first_token_ns = time.monotonic_ns()
        if kind == "response.output_text.delta":
            self.text.append(get(event, "delta") or "")
        elif kind == "response.output_item.done":
            self.items.append(get(event, "item"))
        elif kind == "response.created":
            self.model = get(get(event, "response"), "model")
        elif kind in self._FINAL:
            self.final = get(event, "response")

    def payload(self) -> dict[str, Any]:
        if self.final is not None:
            return _responses_end(self.final)
        message = _output_message(self.items)
        if not message["content"]:
            message["content"] = "".join(self.text)
        response = {"message": message, "raw": {"model": self.model, "output": self.items}}
        return _reply(response, None, self.model, None, None)


# -- embeddings ----------------------------------------------------------------------------------


def _embeddings_start(kwargs: dict[str, Any]) -> dict[str, Any]:
    texts = _materialized(kwargs, "input")
    payload: dict[str, Any] = {
        _P.EMBEDDING_MODEL_NAME.value: kwargs.get("model"),
        _P.INVOCATION_PARAMETERS.value: parameters(kwargs, frozenset({"input"})),
    }
    if isinstance(texts, str):
        payload[_P.CHUNKS.value] = [texts]
    elif isinstance(texts, (list, tuple)) and all(isinstance(t, str) for t in texts):
        payload[_P.CHUNKS.value] = list(texts)
    return payload


def _embeddings_end(result: Any) -> dict[str, Any]:
    data = get(result, "data")
    if data is None:
        return {}
    payload: dict[str, Any] = {
        _P.EMBEDDINGS.value: [get(item, "embedding") for item in data],
        _P.MODEL_NAME.value: get(result, "model"),
    }
    usage = get(result, "usage")
    if usage is not None:
        payload[_P.USAGE.value] = plain(usage)
    request_id = _request_id(result)
    if request_id:
        payload[_P.REQUEST_ID.value] = request_id
    return payload


# -- patching ------------------------------------------------------------------------------------

_CHAT = _sdk.CallSpec(EventType.LLM, _chat_start, _chat_end, _ChatStream, _streamed, _request_id)
_RESPONSES = _sdk.CallSpec(
    EventType.LLM, _responses_start, _responses_end, _ResponsesStream, _streamed, _request_id
)
_EMBEDDINGS = _sdk.CallSpec(EventType.EMBEDDING, _embeddings_start, _embeddings_end)


def _targets() -> list[tuple[Any, str, _sdk.CallSpec, str]]:
    from openai.resources import embeddings
    from openai.resources.chat import completions

    targets: list[tuple[Any, str, _sdk.CallSpec, str]] = []
    owner: Any
    for owner in (completions.Completions, completions.AsyncCompletions):
        targets += [(owner, "create", _CHAT, "method")]
        if "parse" in owner.__dict__:
            targets += [(owner, "parse", _CHAT, "method")]
    for owner in (embeddings.Embeddings, embeddings.AsyncEmbeddings):
        targets += [(owner, "create", _EMBEDDINGS, "method")]
    try:
        from openai.resources import responses
    except ImportError:  # pragma: no cover - openai before 1.66 has no Responses API
        return targets
    for owner in (responses.Responses, responses.AsyncResponses):
        targets += [(owner, "create", _RESPONSES, "method")]
        if "parse" in owner.__dict__:
            targets += [(owner, "parse", _RESPONSES, "method")]
    return targets


_instrumentor = _sdk.Instrumentor("openai", _targets)


def instrument(manager: CallbackManager | None = None) -> None:
    """Report every OpenAI SDK request to ``manager`` (``None``: the process-wide
    :func:`callbacks.get_manager`, resolved at each request). Idempotent: a second call only
    changes the manager. Raises ``ImportError`` when ``openai`` is not installed."""
    _instrumentor.instrument(manager)


def uninstrument() -> None:
    """Put the SDK's own methods back (the very same function objects)."""
    _instrumentor.uninstrument()


def instrumented() -> bool:
    """True while the OpenAI SDK is instrumented."""
    return _instrumentor.instrumented
