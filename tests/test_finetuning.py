"""The ``finetuning`` plugin: OpenAI chat fine-tuning JSONL from LLM calls."""

from __future__ import annotations

import asyncio
import json

import pytest

from callbacks import CallbackManager, EventPayload, EventType
from callbacks_finetuning import FineTuningPlugin

P = EventPayload

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = {
    "id": "call_7",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
}


@pytest.fixture
def recorded(make_manager, tmp_path):
    """A manager with a fine-tuning recorder writing to tmp_path; returns (manager, plugin)."""

    def make(config: dict | None = None):
        plugin = FineTuningPlugin()
        settings = {"path": str(tmp_path / "ft.jsonl"), **(config or {})}
        return make_manager(plugin, config={"finetuning": settings}), plugin

    return make


def llm_call(cm: CallbackManager, start: dict, end: dict) -> None:
    with cm.event(EventType.LLM, start) as event:
        event.on_end(end)


def lines_of(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def test_chat_call_with_tools_and_tool_calls_becomes_one_valid_line(
    recorded, tmp_path, check_finetuning_line
):
    cm, plugin = recorded()
    history = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_7", "content": "Sunny, 21 C"},
    ]
    response = {"message": {"role": "assistant", "content": "Sunny and 21 C."}}
    llm_call(cm, {P.MESSAGES: history, P.TOOLS: TOOLS}, {P.RESPONSE: response})
    first_turn = {"message": {"role": "assistant", "content": None, "tool_calls": [CALL]}}
    llm_call(cm, {P.MESSAGES: history[:2], P.TOOLS: TOOLS}, {P.RESPONSE: first_turn})
    cm.flush()
    answer, call = (check_finetuning_line(line) for line in lines_of(tmp_path / "ft.jsonl"))
    assert [m["role"] for m in answer["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert answer["messages"][2] == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    assert answer["messages"][3]["tool_call_id"] == "call_7"
    assert answer["messages"][-1] == {"role": "assistant", "content": "Sunny and 21 C."}
    assert answer["tools"] == TOOLS
    assert call["messages"][-1] == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    assert plugin.finetuning_events == [answer, call]


def test_completion_style_call_becomes_a_valid_line_not_a_key_error(
    recorded, tmp_path, check_finetuning_line
):
    cm, _ = recorded()
    llm_call(
        cm,
        {P.PROMPT: "Translate 'hej' to English.", P.SYSTEM_PROMPT: "You translate."},
        {P.COMPLETION: "hello"},
    )
    llm_call(cm, {P.PROMPT: "2 + 2 ="}, {P.RESPONSE: "4"})
    cm.flush()
    first, second = (check_finetuning_line(line) for line in lines_of(tmp_path / "ft.jsonl"))
    assert first["messages"] == [
        {"role": "system", "content": "You translate."},
        {"role": "user", "content": "Translate 'hej' to English."},
        {"role": "assistant", "content": "hello"},
    ]
    assert second["messages"] == [
        {"role": "user", "content": "2 + 2 ="},
        {"role": "assistant", "content": "4"},
    ]
    assert cm.stats()["finetuning"]["errors"] == 0


def test_calls_without_completion_are_skipped_and_counted(recorded, tmp_path):
    cm, plugin = recorded()
    llm_call(cm, {P.PROMPT: "hello"}, {})
    with pytest.raises(TimeoutError), cm.event(EventType.LLM, {P.PROMPT: "hello"}):
        raise TimeoutError
    llm_call(cm, {P.PROMPT: "hello"}, {P.COMPLETION: "hi"})
    assert plugin.skipped_calls == 2
    assert len(plugin.finetuning_events) == 1
    assert len(lines_of(tmp_path / "ft.jsonl")) == 1


def test_llama_index_messages_and_responses_are_understood(recorded, check_finetuning_line):
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole

    cm, plugin = recorded({"path": None})
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
        ChatMessage(role=MessageRole.USER, content="Weather in Oslo?"),
        ChatMessage(
            role=MessageRole.ASSISTANT, content="", additional_kwargs={"tool_calls": [CALL]}
        ),
        ChatMessage(
            role=MessageRole.TOOL, content="Sunny", additional_kwargs={"tool_call_id": "call_7"}
        ),
    ]
    response = ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content="Sunny."))
    llm_call(cm, {P.MESSAGES: messages}, {P.RESPONSE: response})
    (example,) = plugin.finetuning_events
    check_finetuning_line(json.dumps(example))
    assert example["messages"][2]["tool_calls"][0]["id"] == "call_7"
    assert example["messages"][3] == {"role": "tool", "content": "Sunny", "tool_call_id": "call_7"}
    assert example["messages"][-1] == {"role": "assistant", "content": "Sunny."}
    assert plugin.path is None


def test_concurrent_calls_append_whole_lines(recorded, tmp_path, check_finetuning_line):
    cm, _ = recorded()

    async def call(i: int) -> None:
        async with cm.as_trace("q"):
            with cm.event(EventType.LLM, {P.PROMPT: f"question {i} " + "x" * 5000}) as event:
                await asyncio.sleep(0)
                event.on_end({P.COMPLETION: f"answer {i}"})

    async def main() -> None:
        await asyncio.gather(*(call(i) for i in range(200)))

    asyncio.run(main())
    cm.flush()
    lines = lines_of(tmp_path / "ft.jsonl")
    answers = sorted(check_finetuning_line(line)["messages"][-1]["content"] for line in lines)
    assert answers == sorted(f"answer {i}" for i in range(200))


def test_file_is_appended_and_closed_at_shutdown(recorded, tmp_path):
    (tmp_path / "ft.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
    cm, plugin = recorded()
    llm_call(cm, {P.PROMPT: "hello"}, {P.COMPLETION: "hi"})
    cm.shutdown()
    assert len(lines_of(tmp_path / "ft.jsonl")) == 2
    assert plugin._writer._file is None


def test_save_finetuning_events_writes_every_recorded_line(
    recorded, tmp_path, check_finetuning_line
):
    cm, plugin = recorded({"path": None})
    for i in range(3):
        llm_call(cm, {P.PROMPT: f"q{i}"}, {P.COMPLETION: f"a{i}"})
    assert plugin.save_finetuning_events(tmp_path / "out" / "saved.jsonl") == 3
    lines = lines_of(tmp_path / "out" / "saved.jsonl")
    assert [check_finetuning_line(line)["messages"][-1]["content"] for line in lines] == [
        "a0",
        "a1",
        "a2",
    ]
    assert not (tmp_path / "ft.jsonl").exists()


def test_by_default_examples_stay_in_memory_and_no_file_is_written(
    make_manager, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    cm = make_manager(load_entrypoints=True, config={"plugins": ["finetuning"]})
    llm_call(cm, {P.PROMPT: "hello"}, {P.COMPLETION: "hi"})
    cm.flush()
    plugin = cm.get_plugin("finetuning")
    assert plugin.path is None
    assert [e["messages"][-1]["content"] for e in plugin.finetuning_events] == ["hi"]
    assert list(tmp_path.iterdir()) == []


def test_empty_path_from_the_environment_disables_the_file(monkeypatch, tmp_path) -> None:
    from callbacks import CallbackManager
    from callbacks_finetuning import FineTuningPlugin

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CALLBACKS_FINETUNING__PATH", "")
    cm = CallbackManager(plugins=[FineTuningPlugin()])
    try:
        assert cm.plugin_settings("finetuning").path is None
    finally:
        cm.shutdown()
    assert list(tmp_path.iterdir()) == []
