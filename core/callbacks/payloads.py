"""Read what plugins need out of payloads of any shape.

Payload values come as plain Python (strings, dicts, lists) or as framework objects such as
LlamaIndex's ``NodeWithScore``, ``ChatMessage`` and ``ChatResponse``, or an OpenAI usage object.
LangChain's messages and documents are read too. These helpers read them by duck typing, never
import a framework, and never raise on an odd shape: a missing value is ``None`` or empty, never
the string ``"None"``.

They never consume the application's data: only sequences (lists, tuples), sets and mappings are
read item by item. An iterator or generator (which reading would drain) is recorded as its type
name, e.g. ``"<generator>"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from typing import Any, NamedTuple

from .events import EventPayload

__all__ = [
    "Message",
    "is_readable_collection",
    "NodeView",
    "TokenUsage",
    "assistant_message_of",
    "completion_of",
    "embedding_texts_of",
    "messages_of",
    "model_of",
    "nodes_of",
    "prompt_of",
    "summarize",
    "text_of",
    "to_jsonable",
    "tool_calls_of",
    "usage_of",
]


class NodeView(NamedTuple):
    """A retrieved or parsed node: its id, text, score and metadata, whatever its source type."""

    id: str | None
    text: str
    score: float | None
    metadata: Mapping[str, Any]


class Message(NamedTuple):
    """A chat message reduced to role and content (plus tool calls, name and the id of the tool
    call it answers, when present)."""

    role: str
    content: str
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    name: str | None = None
    tool_call_id: str | None = None


class TokenUsage(NamedTuple):
    """Token counts as a provider reported them, and which convention they came in.

    ``prompt`` counts every input token the model read, cached or not: for Anthropic, whose
    ``input_tokens`` leaves out cache reads and writes, it is ``input_tokens +
    cache_read_input_tokens + cache_creation_input_tokens``. The detail fields are ``None``
    when the provider did not report them."""

    prompt: int
    completion: int
    total: int
    source: str
    """``"openai"``, ``"anthropic"`` or ``"gemini"``."""
    cache_read: int | None = None
    """Prompt tokens served from the provider's prompt cache (OpenAI ``cached_tokens``,
    Anthropic ``cache_read_input_tokens``, Gemini ``cached_content_token_count``)."""
    cache_write: int | None = None
    """Prompt tokens written to the cache (Anthropic ``cache_creation_input_tokens``)."""
    reasoning: int | None = None
    """Completion tokens spent on reasoning (OpenAI ``reasoning_tokens``, Gemini
    ``thoughts_token_count``)."""


_MISSING = object()


def is_readable_collection(value: Any) -> bool:
    """True for a sequence, set or mapping (not a string): a container that can be read item
    by item without consuming it. Iterators and generators are not."""
    return isinstance(value, (Sequence, Set, Mapping)) and not isinstance(
        value, (str, bytes, bytearray)
    )


def _type_marker(value: Any) -> str:
    return f"<{type(value).__name__}>"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    try:
        return getattr(obj, name, default)
    except Exception:
        return default


def text_of(value: Any) -> str:
    """The text of a string, node, message, response, document or dict; ``""`` for ``None``."""
    if value is None:
        return ""
    if isinstance(value, str):
        # A str subclass (LangChain's TextAccessor) becomes a plain str: some sinks' C code
        # accepts only exact str.
        return value if type(value) is str else str.__str__(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Iterator):
        return _type_marker(value)
    if isinstance(value, Mapping):
        for key in ("text", "content", "response", "completion", "message", "page_content"):
            inner = value.get(key)
            if inner is not None:
                return text_of(inner)
        return _json_or_str(value)
    node = _get(value, "node")
    if node is not None and node is not value:
        return text_of(node)
    get_content = _get(value, "get_content")
    if callable(get_content):
        try:
            content = get_content()
            if isinstance(content, str):
                return text_of(content)
        except Exception:
            pass
    if _get(value, "role") is not None and _get(value, "content", _MISSING) is None:
        return ""  # a chat message that only calls tools
    if _get(value, "response_gen") is not None:
        # A streaming response: str() would drain the user's generator. Read only what was
        # already streamed.
        return _get(value, "response_txt") or ""
    for attr in ("text", "content", "message", "response", "page_content"):
        inner = _get(value, attr, _MISSING)
        if inner is None and attr == "response":
            return ""
        if inner is not None and inner is not _MISSING and inner is not value:
            if isinstance(inner, str):
                return text_of(inner)
            if attr in ("message", "response", "content"):
                return text_of(inner)
    if isinstance(value, (list, tuple)):
        return "\n".join(text_of(v) for v in value)
    return str(value)


def _json_or_str(value: Any) -> str:
    try:
        return json.dumps(to_jsonable(value), ensure_ascii=False, sort_keys=True)
    except Exception:
        return str(value)


def nodes_of(value: Any, scores: Iterable[Any] | None = None) -> list[NodeView]:
    """Nodes from strings, dicts, LlamaIndex ``NodeWithScore``/``TextNode`` or documents."""
    if value is None:
        return []
    if isinstance(value, Mapping) or not is_readable_collection(value):
        value = [value]
    score_list = list(scores) if scores is not None and is_readable_collection(scores) else []
    out: list[NodeView] = []
    for i, item in enumerate(value):
        node = _get(item, "node") if not isinstance(item, (str, Mapping)) else None
        base = node if node is not None else item
        node_id = None
        metadata: Mapping[str, Any] = {}
        if isinstance(item, Mapping):
            node_id = item.get("id") or item.get("node_id") or item.get("id_")
            metadata = item.get("metadata") or {}
        elif not isinstance(item, str):
            node_id = _get(base, "node_id") or _get(base, "id_") or _get(base, "id")
            metadata = _get(base, "metadata") or {}
        score = _get(item, "score") if not isinstance(item, str) else None
        if score is None and i < len(score_list):
            score = score_list[i]
        try:
            score = float(score) if score is not None else None
        except (TypeError, ValueError):
            score = None
        out.append(
            NodeView(
                str(node_id) if node_id is not None else None,
                text_of(base),
                score,
                metadata if isinstance(metadata, Mapping) else {},
            )
        )
    return out


# LangChain messages carry no role, only a type ("human", "ai"...; "AIMessageChunk" for chunks).
_ROLE_OF_TYPE = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "function",
    "developer": "developer",
}


def _role_of(message: Any) -> str:
    role = _get(message, "role")
    if role is None:
        kind = _get(message, "type")
        if isinstance(kind, str):
            role = _ROLE_OF_TYPE.get(kind.removesuffix("MessageChunk").lower())
    role = getattr(role, "value", role)
    return str(role) if role is not None else "user"


_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_TOOL_USE_PARTS = frozenset({"tool_use", "server_tool_use"})
_RESPONSES_ITEMS = frozenset({"function_call", "function_call_output", "reasoning"})


def _call_of_block(block: Any) -> dict[str, Any]:
    """An Anthropic ``tool_use`` block as an OpenAI-shaped tool call."""
    arguments = _get(block, "input")
    return {
        "id": _get(block, "id"),
        "type": "function",
        "function": {
            "name": _get(block, "name"),
            "arguments": arguments if isinstance(arguments, str) else _json_or_str(arguments),
        },
    }


def _parts(content: Any) -> tuple[str, list[Any], list[Message]]:
    """Read a list of content parts (OpenAI's ``text`` / ``image_url`` parts, the Responses API's
    ``input_text`` / ``output_text``, Anthropic's ``text`` / ``tool_use`` / ``tool_result``
    blocks): the joined text, the tool calls, and tool results as ``tool`` messages. Parts
    without text (images, files) add nothing to the text."""
    texts: list[str] = []
    calls: list[Any] = []
    results: list[Message] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        kind = _get(part, "type")
        kind = getattr(kind, "value", kind)
        if kind in _TOOL_USE_PARTS:
            calls.append(_call_of_block(part))
        elif kind == "tool_result":
            inner = _get(part, "content")
            text = _parts(inner)[0] if isinstance(inner, (list, tuple)) else text_of(inner)
            call_id = _get(part, "tool_use_id")
            results.append(
                Message("tool", text, (), None, str(call_id) if call_id is not None else None)
            )
        elif kind in _TEXT_PARTS or (kind is None and _get(part, "text") is not None):
            texts.append(text_of(_get(part, "text")))
        elif kind is None and not isinstance(part, Mapping):
            texts.append(text_of(part))
    return "\n".join(texts), calls, results


def _item_message(item: Any, kind: str) -> Message | None:
    """A Responses API input item that is not a message (a function call or its output)."""
    if kind == "function_call":
        call = {
            "id": _get(item, "call_id") or _get(item, "id"),
            "type": "function",
            "function": {"name": _get(item, "name"), "arguments": _get(item, "arguments")},
        }
        return Message("assistant", "", (call,))
    if kind == "function_call_output":
        call_id = _get(item, "call_id")
        output = _get(item, "output")
        text = _parts(output)[0] if isinstance(output, (list, tuple)) else text_of(output)
        return Message("tool", text, (), None, str(call_id) if call_id is not None else None)
    return None


def messages_of(value: Any) -> list[Message]:
    """Chat messages from dicts (``{"role", "content"}``), ``(role, content)`` pairs or objects
    such as LlamaIndex's ``ChatMessage`` or LangChain's messages (whose role is read from their
    ``type``). A bare string is one user message.

    Provider shapes are understood: content given as a list of parts (OpenAI, Anthropic), an
    Anthropic ``tool_use`` block becomes a tool call (in OpenAI's shape) and each
    ``tool_result`` block a ``tool`` message; the Responses API's ``function_call`` and
    ``function_call_output`` input items become an assistant tool call and a ``tool`` message."""
    if value is None:
        return []
    if isinstance(value, Mapping) or not is_readable_collection(value):
        value = [value]
    out: list[Message] = []
    for item in value:
        if isinstance(item, str):
            out.append(Message("user", text_of(item)))
            continue
        if isinstance(item, Iterator):
            out.append(Message("user", _type_marker(item)))
            continue
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            out.append(Message(item[0], text_of(item[1])))
            continue
        role = _get(item, "role")
        kind = _get(item, "type")
        if role is None and kind in _RESPONSES_ITEMS:
            special = _item_message(item, kind)
            if special is not None:
                out.append(special)
            continue
        content = _get(item, "content")
        block_calls: list[Any] = []
        results: list[Message] = []
        if content is None:
            blocks = _get(item, "blocks")
            content = text_of(blocks) if blocks else ""
        elif isinstance(content, (list, tuple)):
            content, block_calls, results = _parts(content)
        else:
            content = text_of(content)
        extra = _get(item, "additional_kwargs") or {}
        if not isinstance(extra, Mapping):
            extra = {}
        tool_calls = _get(item, "tool_calls")
        if tool_calls is None:
            tool_calls = extra.get("tool_calls")
        if tool_calls is not None and not is_readable_collection(tool_calls):
            tool_calls = [_type_marker(tool_calls)]
        name = _get(item, "name")
        call_id = _get(item, "tool_call_id") or extra.get("tool_call_id")
        if results and not content and not block_calls and not tool_calls:
            out.extend(results)  # an Anthropic user turn that only returns tool results
            continue
        out.append(
            Message(
                _role_of(item),
                content,
                tuple(to_jsonable(t) for t in [*(tool_calls or ()), *block_calls]),
                str(name) if name is not None else None,
                str(call_id) if call_id is not None else None,
            )
        )
        out.extend(results)
    return out


def prompt_of(payload: Mapping[str, Any]) -> str | None:
    """The prompt text of an LLM event: the formatted prompt, else the joined messages."""
    prompt = payload.get(EventPayload.PROMPT)
    if prompt is not None:
        return text_of(prompt)
    messages = payload.get(EventPayload.MESSAGES)
    if messages is not None:
        return "\n".join(f"{m.role}: {m.content}" for m in messages_of(messages))
    query = payload.get(EventPayload.QUERY_STR)
    return text_of(query) if query is not None else None


def completion_of(payload: Mapping[str, Any]) -> str | None:
    """The completion text of an LLM event, from ``completion`` or ``response``; ``None`` when
    neither is present (never the string ``"None"``)."""
    for key in (EventPayload.COMPLETION, EventPayload.RESPONSE):
        value = payload.get(key)
        if value is not None:
            return text_of(value)
    return None


def _reply_of(response: Any) -> Any:
    """The reply message inside a response: its ``message`` (LlamaIndex ``ChatResponse``, the
    SDK integrations' ``response``), the first choice's (an OpenAI ``ChatCompletion``), or the
    response itself when it is an Anthropic-shaped assistant message with content blocks."""
    message = _get(response, "message")
    if message is not None and not isinstance(message, str):
        return message
    choices = _get(response, "choices")
    if isinstance(choices, (list, tuple)) and choices:
        return _get(choices[0], "message")
    if _get(response, "role") == "assistant" and isinstance(
        _get(response, "content"), (list, tuple)
    ):
        return response
    return None


def assistant_message_of(payload: Mapping[str, Any]) -> Message | None:
    """The assistant's reply of an LLM event: its text (``""`` when the reply only calls tools)
    and its tool calls; ``None`` when the event carries no reply."""
    if payload.get(EventPayload.COMPLETION) is None:
        response = payload.get(EventPayload.RESPONSE)
        message = None if isinstance(response, str) else _reply_of(response)
        if message is not None:
            reply = messages_of([message])[0]
            calls = reply.tool_calls or tuple(tool_calls_of(payload))
            return reply._replace(role="assistant", tool_calls=calls)
    text = completion_of(payload)
    if text is None:
        return None
    return Message("assistant", text, tuple(tool_calls_of(payload)))


def model_of(payload: Mapping[str, Any]) -> str | None:
    """The model name: ``model_name``, else ``serialized``'s model, else the raw response's."""
    name = payload.get(EventPayload.MODEL_NAME)
    if name:
        return str(name)
    serialized = payload.get(EventPayload.SERIALIZED)
    if isinstance(serialized, Mapping):
        for key in ("model", "model_name"):
            if serialized.get(key):
                return str(serialized[key])
    for key in (EventPayload.RESPONSE, EventPayload.COMPLETION):
        raw = _get(payload.get(key), "raw")
        model = _get(raw, "model") if raw is not None else None
        if model:
            return str(model)
    return None


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _int_at(obj: Any, *path: str) -> int | None:
    for name in path:
        obj = _get(obj, name)
        if obj is None:
            return None
    return _as_int(obj)


def _usage_from(obj: Any) -> TokenUsage | None:
    if obj is None or isinstance(obj, (str, bytes)):
        return None
    # OpenAI chat completions and embeddings
    prompt = _int_at(obj, "prompt_tokens")
    completion = _int_at(obj, "completion_tokens")
    if prompt is not None or completion is not None:
        prompt, completion = prompt or 0, completion or 0
        total = _int_at(obj, "total_tokens")
        return TokenUsage(
            prompt,
            completion,
            total if total is not None else prompt + completion,
            "openai",
            _int_at(obj, "prompt_tokens_details", "cached_tokens"),
            None,
            _int_at(obj, "completion_tokens_details", "reasoning_tokens"),
        )
    prompt = _int_at(obj, "input_tokens")
    completion = _int_at(obj, "output_tokens")
    if prompt is not None or completion is not None:
        prompt, completion = prompt or 0, completion or 0
        total = _int_at(obj, "total_tokens")
        if total is not None or _get(obj, "input_tokens_details") is not None:
            # OpenAI's Responses API: input_tokens already include the cached ones.
            return TokenUsage(
                prompt,
                completion,
                total if total is not None else prompt + completion,
                "openai",
                _int_at(obj, "input_tokens_details", "cached_tokens"),
                None,
                _int_at(obj, "output_tokens_details", "reasoning_tokens"),
            )
        cache_read = _int_at(obj, "cache_read_input_tokens")
        cache_write = _int_at(obj, "cache_creation_input_tokens")
        prompt += (cache_read or 0) + (cache_write or 0)
        return TokenUsage(
            prompt, completion, prompt + completion, "anthropic", cache_read, cache_write, None
        )
    for p_key, c_key, t_key, cached_key, thoughts_key in (
        (
            "prompt_token_count",
            "candidates_token_count",
            "total_token_count",
            "cached_content_token_count",
            "thoughts_token_count",
        ),
        (
            "promptTokenCount",
            "candidatesTokenCount",
            "totalTokenCount",
            "cachedContentTokenCount",
            "thoughtsTokenCount",
        ),
    ):
        prompt = _int_at(obj, p_key)
        completion = _int_at(obj, c_key)
        if prompt is None and completion is None:
            continue
        prompt, completion = prompt or 0, completion or 0
        total = _int_at(obj, t_key)
        return TokenUsage(
            prompt,
            completion,
            total if total is not None else prompt + completion,
            "gemini",
            _int_at(obj, cached_key),
            None,
            _int_at(obj, thoughts_key),
        )
    return None


def usage_of(payload: Mapping[str, Any]) -> TokenUsage | None:
    """Provider-reported token usage, looked for in ``usage``, then in the response's ``usage``,
    ``raw.usage``, ``raw.usage_metadata`` and ``additional_kwargs``; ``None`` if not reported."""
    candidates: list[Any] = [payload.get(EventPayload.USAGE)]
    for key in (EventPayload.RESPONSE, EventPayload.COMPLETION):
        response = payload.get(key)
        if response is None or isinstance(response, str):
            continue
        raw = _get(response, "raw")
        candidates += [
            _get(response, "usage"),
            _get(response, "usage_metadata"),
            _get(raw, "usage") if raw is not None else None,
            _get(raw, "usage_metadata") if raw is not None else None,
            _get(response, "additional_kwargs"),
            raw,
        ]
    for candidate in candidates:
        usage = _usage_from(candidate)
        if usage is not None:
            return usage
    return None


def tool_calls_of(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Tool calls the LLM asked for, from the response message or the ``function_call`` key."""
    for key in (EventPayload.RESPONSE, EventPayload.COMPLETION):
        response = payload.get(key)
        if response is None or isinstance(response, str):
            continue
        message = _reply_of(response)
        message = response if message is None else message
        replies = messages_of([message])
        calls = replies[0].tool_calls if replies else ()
        if calls:
            return list(calls)
    call = payload.get(EventPayload.FUNCTION_CALL)
    if isinstance(call, Mapping):
        return [to_jsonable(call)]
    return []


def embedding_texts_of(payload: Mapping[str, Any]) -> list[str]:
    """The texts an embedding event embedded (``chunks``, else ``nodes`` or ``documents``)."""
    for key in (EventPayload.CHUNKS, EventPayload.NODES, EventPayload.DOCUMENTS):
        value = payload.get(key)
        if value is not None:
            if isinstance(value, str):
                return [value]
            return [n.text for n in nodes_of(value)]
    return []


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """A JSON-serialisable copy: containers recursed, models dumped, anything else ``str()``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if _depth > 8:
        return str(value)
    if isinstance(value, Mapping):
        return {str(getattr(k, "value", k)): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, _depth + 1) for v in value]
    if isinstance(value, Iterator):
        return _type_marker(value)
    for dump in ("model_dump", "dict", "to_dict"):
        method = getattr(value, dump, None)
        if callable(method):
            try:
                return to_jsonable(method(), _depth + 1)
            except Exception:
                continue
    value_attr = getattr(value, "value", None)
    if isinstance(value_attr, (str, int, float)):
        return value_attr
    return str(value)


def summarize(value: Any, limit: int = 80) -> str:
    """A one-line summary of a payload value: text shortened to ``limit`` characters, lists
    summarised by length."""
    if isinstance(value, (list, tuple)) and value and not isinstance(value[0], (int, float)):
        first = summarize(value[0], limit // 2)
        return f"[{len(value)} items] {first}" if len(value) > 1 else first
    if isinstance(value, (list, tuple)):
        return f"[{len(value)} numbers]"
    text = " ".join(text_of(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
