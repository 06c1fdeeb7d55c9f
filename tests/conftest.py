"""Shared fixtures: a recording plugin and managers that are always shut down."""

from __future__ import annotations

from typing import Any

import pytest

from callbacks import CallbackManager
from callbacks.testing import RecordingPlugin


@pytest.fixture
def recorder() -> RecordingPlugin:
    return RecordingPlugin()


@pytest.fixture
def make_manager():
    """Build managers that are always shut down after the test."""
    made: list[CallbackManager] = []

    def make(*plugins: Any, **kwargs: Any) -> CallbackManager:
        manager = CallbackManager(plugins=plugins, **kwargs)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.shutdown(timeout=2.0)


# -- OpenAI chat fine-tuning format (built-in plugins and demo tests) ----------------------------

_FINETUNING_ROLES = {"system", "user", "assistant", "tool"}


def check_finetuning_example(example: Any) -> None:
    """Raise AssertionError unless ``example`` is a valid OpenAI chat fine-tuning line: known
    roles, string contents (null only for an assistant message with tool calls), well-formed
    tool calls and tool definitions, and a final assistant message. Written independently of
    the finetuning plugin's own code."""
    import json

    assert isinstance(example, dict), example
    assert set(example) <= {"messages", "tools", "parallel_tool_calls"}, sorted(example)
    messages = example["messages"]
    assert isinstance(messages, list) and messages, example
    call_ids: set[str] = set()
    for message in messages:
        role = message.get("role")
        assert role in _FINETUNING_ROLES, message
        assert set(message) <= {"role", "content", "name", "tool_calls", "tool_call_id", "weight"}
        content = message.get("content")
        tool_calls = message.get("tool_calls")
        if content is None:
            assert role == "assistant" and tool_calls, (
                f"null content only with tool calls: {message}"
            )
        else:
            assert isinstance(content, str), message
        if tool_calls is not None:
            assert role == "assistant" and isinstance(tool_calls, list) and tool_calls, message
            for call in tool_calls:
                assert call["type"] == "function" and isinstance(call["id"], str), call
                assert isinstance(call["function"]["name"], str) and call["function"]["name"]
                json.loads(call["function"]["arguments"])
                call_ids.add(call["id"])
        if role == "tool":
            assert isinstance(content, str), message
            if "tool_call_id" in message:
                assert message["tool_call_id"] in call_ids, message
    assert any(m["role"] == "user" for m in messages), messages
    assert messages[-1]["role"] == "assistant", messages[-1]
    for tool in example.get("tools", []):
        assert tool["type"] == "function", tool
        assert isinstance(tool["function"]["name"], str), tool
        assert isinstance(tool["function"].get("parameters", {}), dict), tool


@pytest.fixture
def check_finetuning_line():
    """Parse one JSONL line and check it with :func:`check_finetuning_example`."""
    import json

    def check(line: str) -> dict[str, Any]:
        assert line.endswith("\n") or "\n" not in line
        example = json.loads(line)
        check_finetuning_example(example)
        return example

    return check
