"""Turn one LLM call's payload into an OpenAI chat fine-tuning example."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from callbacks import EventPayload
from callbacks.payloads import (
    assistant_message_of,
    messages_of,
    prompt_of,
    text_of,
    to_jsonable,
)

__all__ = ["Example", "build_example"]

Example = dict[str, Any]
"""``{"messages": [...]}``, plus ``"tools"`` when tools were offered."""

_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "chatbot": "assistant",
    "model": "assistant",
    "tool": "tool",
    "function": "tool",
}


def build_example(payload: Mapping[str, Any]) -> Example | None:
    """The example for one LLM call (start and end payloads merged), or ``None`` when the call
    produced no completion and no tool call."""
    reply_message = assistant_message_of(payload)
    if reply_message is None or not (reply_message.content or reply_message.tool_calls):
        return None
    reply_text, reply_calls = reply_message.content or None, list(reply_message.tool_calls)
    messages = _prompt_messages(payload)
    reply: dict[str, Any] = {"role": "assistant", "content": reply_text}
    if reply_calls:
        reply["tool_calls"] = [_tool_call(call, i) for i, call in enumerate(reply_calls)]
    else:
        reply["content"] = reply_text or ""
    messages.append(reply)
    example: Example = {"messages": messages}
    tools = payload.get(EventPayload.TOOLS)
    if tools:
        example["tools"] = [_tool_definition(tool) for tool in tools]
    return example


def _prompt_messages(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = payload.get(EventPayload.MESSAGES)
    if raw is None:
        out: list[dict[str, Any]] = []
        system = payload.get(EventPayload.SYSTEM_PROMPT)
        if system:
            out.append({"role": "system", "content": text_of(system)})
        out.append({"role": "user", "content": prompt_of(payload) or ""})
        return out
    out = []
    for message in messages_of(raw):
        role = _ROLES.get(message.role.lower(), "user")
        entry: dict[str, Any] = {"role": role, "content": message.content}
        if role == "assistant" and message.tool_calls:
            entry["tool_calls"] = [_tool_call(c, i) for i, c in enumerate(message.tool_calls)]
            entry["content"] = message.content or None
        if role == "tool":
            if message.tool_call_id is not None:
                entry["tool_call_id"] = message.tool_call_id
        if message.name and role in ("user", "assistant", "system"):
            entry["name"] = message.name
        out.append(entry)
    return out


def _tool_call(call: Mapping[str, Any], index: int) -> dict[str, Any]:
    """An OpenAI ``tool_calls`` entry from OpenAI, LlamaIndex (``ToolSelection``) or bare
    ``{"name", "arguments"}`` shapes."""
    call = to_jsonable(call)
    raw_function = call.get("function")
    function: Mapping[str, Any] = raw_function if isinstance(raw_function, Mapping) else {}
    name = function.get("name") or call.get("name") or call.get("tool_name") or "function"
    arguments = function.get("arguments", call.get("arguments", call.get("tool_kwargs", {})))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False, sort_keys=True)
    call_id = call.get("id") or call.get("tool_id") or f"call_{index}"
    return {
        "id": str(call_id),
        "type": "function",
        "function": {"name": str(name), "arguments": arguments},
    }


def _tool_definition(tool: Any) -> dict[str, Any]:
    """An OpenAI ``tools`` entry from an OpenAI dict, a ``{"name", "parameters"}`` dict, or a
    LlamaIndex tool (``metadata.to_openai_tool()``)."""
    metadata = getattr(tool, "metadata", None)
    to_openai = getattr(metadata, "to_openai_tool", None)
    if callable(to_openai):
        tool = to_openai()
    tool = to_jsonable(tool)
    if isinstance(tool, Mapping) and tool.get("type") == "function" and "function" in tool:
        return dict(tool)
    if isinstance(tool, Mapping):
        function = {
            "name": str(tool.get("name", "function")),
            "description": str(tool.get("description", "")),
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        }
        return {"type": "function", "function": function}
    return {"type": "function", "function": {"name": str(tool), "parameters": {}}}


def iter_lines(examples: Iterable[Example]) -> Iterable[str]:
    """Each example as one JSON line (with its newline)."""
    for example in examples:
        yield json.dumps(example, ensure_ascii=False) + "\n"
