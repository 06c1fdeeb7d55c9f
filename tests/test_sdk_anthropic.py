"""callbacks.integrations.anthropic against the real anthropic client, over HTTP, talking to a
loopback server that answers with the shapes of Anthropic's Messages API reference. The oracle
is what the server sent (usage, text, tool use, request ids) and the SDK's own behaviour."""

from __future__ import annotations

import asyncio
import gc

import anthropic
import pytest
from sdk_server import (
    CLAUDE,
    LoopbackAPI,
    Reply,
    anthropic_error,
    anthropic_usage,
    claude_message,
    claude_stream,
)

import callbacks.integrations.anthropic as callbacks_anthropic
from callbacks import EventPayload as P
from callbacks import EventType, hookimpl, payloads

TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
def api():
    with LoopbackAPI() as server:
        yield server


@pytest.fixture
def cm(make_manager, recorder):
    manager = make_manager(recorder)
    callbacks_anthropic.instrument(manager)
    yield manager
    callbacks_anthropic.uninstrument()


@pytest.fixture
def client(api):
    with anthropic.Anthropic(api_key="sk-ant-test", base_url=api.url, max_retries=0) as c:
        yield c


def _only_end(recorder):
    ends = recorder.ends(EventType.LLM)
    assert len(ends) == 1, ends
    return ends[0]


def test_message_with_tool_use_is_one_llm_event(api, cm, client, recorder):
    usage = anthropic_usage(472, 89, cache_read=100, cache_write=20)
    content = [
        {"type": "text", "text": "I'll check."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    api.queue(Reply(claude_message(content, usage, "tool_use"), headers={"request-id": "req_1"}))
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_00",
                    "name": "get_weather",
                    "input": {"city": "Lyon"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_00", "content": "sunny"}],
        },
    ]

    result = client.messages.create(
        model="claude-test",
        max_tokens=256,
        system="Be brief.",
        messages=history,
        tools=[TOOL],
        stop_sequences=["END"],
    )

    assert isinstance(result, anthropic.types.Message)
    assert result.content[1].input == {"city": "Paris"}
    end = _only_end(recorder)
    start = end.start
    assert start.payload[P.MODEL_NAME] == "claude-test"
    assert start.payload[P.TOOLS] == [TOOL]
    assert start.payload[P.INVOCATION_PARAMETERS] == {
        "model": "claude-test",
        "max_tokens": 256,
        "stop_sequences": ["END"],
    }
    parsed = payloads.messages_of(start.payload[P.MESSAGES])
    assert [(m.role, m.content) for m in parsed] == [
        ("system", "Be brief."),
        ("user", "Weather in Paris?"),
        ("assistant", ""),
        ("tool", "sunny"),
    ]
    assert parsed[2].tool_calls[0]["function"]["name"] == "get_weather"
    assert parsed[3].tool_call_id == "toolu_00"
    assert end.payload[P.USAGE] == usage
    assert end.payload[P.MODEL_NAME] == CLAUDE
    assert end.payload[P.REQUEST_ID] == "req_1"
    assert end.payload[P.RESPONSE]["raw"] is result
    assert end.payload[P.RESPONSE]["finish_reason"] == "tool_use"
    reply = payloads.assistant_message_of(end.payload)
    assert reply.content == "I'll check."
    assert reply.tool_calls == (
        {
            "id": "toolu_01A",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
    )
    # Anthropic's input_tokens leave cache reads and writes out; the reader adds them back.
    assert payloads.usage_of(end.payload) == payloads.TokenUsage(
        592, 89, 681, "anthropic", 100, 20, None
    )
    assert len(api.requests) == 1


def test_create_stream_true_assembles_text_tool_use_and_usage(api, cm, client, recorder):
    start_usage = anthropic_usage(472, 2, cache_read=7)
    delta_usage = {"output_tokens": 89}
    fragments = ['{"city":', ' "Par', 'is"}']
    api.queue(
        Reply(
            events=claude_stream(
                ["Okay", ", checking"],
                start_usage,
                delta_usage,
                ("toolu_9", "get_weather", fragments),
            ),
            headers={"request-id": "req_s"},
        )
    )

    stream = client.messages.create(
        model="claude-test", max_tokens=256, messages=ASK, tools=[TOOL], stream=True
    )
    assert type(stream) is anthropic.Stream
    assert not recorder.ends(EventType.LLM)
    kinds = [event.type for event in stream]

    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    end = _only_end(recorder)
    assert end.payload[P.STREAM_END] == "exhausted"
    assert end.payload[P.REQUEST_ID] == "req_s"
    assert end.payload[P.MODEL_NAME] == CLAUDE
    assert end.payload[P.USAGE] == {**start_usage, **delta_usage}
    reply = payloads.assistant_message_of(end.payload)
    assert reply.content == "Okay, checking"
    assert reply.tool_calls[0]["id"] == "toolu_9"
    assert reply.tool_calls[0]["function"]["arguments"] == '{"city": "Paris"}'
    assert end.payload[P.RESPONSE]["raw"]["content"][1]["input"] == {"city": "Paris"}
    assert end.payload[P.RESPONSE]["finish_reason"] == "tool_use"
    assert 0 < end.payload[P.TIME_TO_FIRST_TOKEN] <= end.duration_ns
    assert payloads.usage_of(end.payload) == payloads.TokenUsage(
        479, 89, 568, "anthropic", 7, 0, None
    )


def test_messages_stream_helper_text_stream_and_final_message(api, cm, client, recorder):
    api.queue(
        Reply(
            events=claude_stream(["Hello", " world"], anthropic_usage(12, 1), {"output_tokens": 6})
        )
    )

    manager = client.messages.stream(model="claude-test", max_tokens=64, messages=ASK)
    assert isinstance(manager, anthropic.lib.streaming.MessageStreamManager)
    assert not recorder.starts(EventType.LLM)  # no request before the block is entered
    with manager as stream:
        assert type(stream) is anthropic.lib.streaming.MessageStream
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "Hello world"
    assert final.usage.output_tokens == 6
    end = _only_end(recorder)
    assert end.payload[P.RESPONSE]["message"]["content"] == "Hello world"
    assert end.payload[P.USAGE]["output_tokens"] == final.usage.output_tokens
    assert end.payload[P.USAGE]["input_tokens"] == final.usage.input_tokens
    assert end.payload[P.STREAM_END] == "exhausted"


def test_messages_stream_left_early_ends_closed(api, cm, client, recorder):
    api.queue(
        Reply(events=claude_stream(["a", "b", "c"], anthropic_usage(3, 1), {"output_tokens": 3}))
    )

    with client.messages.stream(model="claude-test", max_tokens=64, messages=ASK) as stream:
        first = next(iter(stream.text_stream))
        assert not recorder.ends(EventType.LLM)

    assert first == "a"
    end = _only_end(recorder)
    assert end.payload[P.STREAM_END] == "closed"
    assert end.payload[P.RESPONSE]["message"]["content"] == "a"
    assert end.payload[P.USAGE] == anthropic_usage(3, 1)  # only message_start's arrived


def test_abandoned_stream_ends_when_collected(api, cm, client, recorder):
    api.queue(Reply(events=claude_stream(["a", "b"], anthropic_usage(3, 1), {"output_tokens": 2})))
    stream = client.messages.create(model="claude-test", max_tokens=64, messages=ASK, stream=True)
    for event in stream:
        if event.type == "content_block_delta":
            break
    del stream, event
    gc.collect()

    end = _only_end(recorder)
    assert end.payload[P.STREAM_END] == "abandoned"
    assert end.payload[P.RESPONSE]["message"]["content"] == "a"


def test_async_client_create_and_stream_nest_under_the_current_event(api, cm, recorder):
    usage = anthropic_usage(10, 4)
    api.queue(Reply(claude_message([{"type": "text", "text": "Hi"}], usage)))
    api.queue(Reply(events=claude_stream(["Hi", "!"], usage, {"output_tokens": 5})))

    async def main():
        async with anthropic.AsyncAnthropic(api_key="k", base_url=api.url, max_retries=0) as client:
            with cm.as_trace("chat"), cm.event(EventType.AGENT_STEP) as step:
                message = await client.messages.create(
                    model="claude-test", max_tokens=16, messages=ASK
                )
                async with client.messages.stream(
                    model="claude-test", max_tokens=16, messages=ASK
                ) as stream:
                    assert type(stream) is anthropic.lib.streaming.AsyncMessageStream
                    text = "".join([t async for t in stream.text_stream])
                assert cm.current_event_id() == step.id
                return step.id, message, text

    step_id, message, text = asyncio.run(main())

    assert message.content[0].text == "Hi" and text == "Hi!"
    ends = recorder.ends(EventType.LLM)
    assert [e.parent_id for e in ends] == [step_id, step_id]
    assert ends[0].payload[P.USAGE] == usage
    assert ends[1].payload[P.USAGE] == {**usage, "output_tokens": 5}
    assert ends[1].payload[P.STREAM_END] == "exhausted"


def test_error_status_reaches_the_app_unchanged(api, cm, client, recorder):
    api.queue(anthropic_error(529, "overloaded_error", "Overloaded"))

    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude-test", max_tokens=8, messages=ASK)

    assert caught.value.status_code == 529
    end = _only_end(recorder)
    assert end.exception is caught.value
    assert end.exception.body["error"]["type"] == "overloaded_error"
    assert end.payload[P.REQUEST_ID] == "req_018EeWyXxfu5pfWkrYcMdjWG"


def test_error_entering_messages_stream(api, cm, client, recorder):
    api.queue(anthropic_error(429, "rate_limit_error", "Slow down"))

    with pytest.raises(anthropic.RateLimitError) as caught:
        with client.messages.stream(model="claude-test", max_tokens=8, messages=ASK):
            pass

    end = _only_end(recorder)
    assert end.exception is caught.value


def test_uninstrument_restores_the_sdk_exactly(make_manager, recorder):
    targets = callbacks_anthropic._targets()
    assert {name for _, name, _, _ in targets} >= {"create", "stream"}
    before = {(owner, name): owner.__dict__[name] for owner, name, _, _ in targets}
    callbacks_anthropic.instrument(make_manager(recorder))
    callbacks_anthropic.instrument(make_manager(recorder))
    assert all(owner.__dict__[name] is not before[(owner, name)] for owner, name in before)
    callbacks_anthropic.uninstrument()
    assert all(owner.__dict__[name] is before[(owner, name)] for owner, name in before)
    assert not callbacks_anthropic.instrumented()


class _RaisingPlugin:
    callbacks_delivery = "inline"

    @hookimpl
    def on_event_start(self, event):
        raise RuntimeError("plugin bug")

    @hookimpl
    def on_event_end(self, event):
        raise RuntimeError("plugin bug")


def test_raising_plugin_never_affects_the_stream(api, make_manager, recorder, client):
    manager = make_manager(_RaisingPlugin(), recorder)
    callbacks_anthropic.instrument(manager)
    try:
        api.queue(
            Reply(events=claude_stream(["o", "k"], anthropic_usage(1, 1), {"output_tokens": 2}))
        )
        with client.messages.stream(model="m", max_tokens=8, messages=ASK) as stream:
            text = "".join(stream.text_stream)
    finally:
        callbacks_anthropic.uninstrument()
    assert text == "ok"
    assert len(recorder.ends(EventType.LLM)) == 1
    assert manager.stats()["_raisingplugin"]["errors"] == 2


def test_messages_parse_is_reported(api, cm, client, recorder):
    api.queue(Reply(claude_message([{"type": "text", "text": "Paris"}], anthropic_usage(4, 1))))

    parsed = client.messages.parse(model="claude-test", max_tokens=8, messages=ASK)

    assert parsed.content[0].text == "Paris"
    end = _only_end(recorder)
    assert end.payload[P.RESPONSE]["raw"] is parsed
    assert end.payload[P.USAGE] == anthropic_usage(4, 1)
