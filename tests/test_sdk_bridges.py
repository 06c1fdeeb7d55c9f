"""The SDK instrumentation inside a framework bridge: a LlamaIndex LLM (the user's own
``CustomLLM``, calling the real openai client against a loopback server) is reported once, by
the LlamaIndex bridge; the SDK request inside it is not reported a second time. LlamaIndex's own
``LlamaDebugHandler`` is the oracle for how many model calls there were."""

from __future__ import annotations

from typing import Any

import openai
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.callbacks import CallbackManager as LlamaCallbackManager
from llama_index.core.callbacks import CBEventType, LlamaDebugHandler
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from sdk_server import LoopbackAPI, Reply, chat_completion, chat_stream, openai_usage

import callbacks.integrations.openai as callbacks_openai
from callbacks import EventPayload as P
from callbacks import EventType
from callbacks.integrations._sdk import _guard
from callbacks.integrations.llama_index import CallbacksHandler


class LoopbackOpenAI(CustomLLM):
    """The user's own LlamaIndex LLM: it calls the OpenAI SDK directly."""

    base_url: str

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini")

    def _client(self) -> openai.OpenAI:
        return openai.OpenAI(api_key="sk-test", base_url=self.base_url, max_retries=0)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        result = self._client().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        return CompletionResponse(text=result.choices[0].message.content, raw=result)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        stream = self._client().chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )

        def gen():
            text = ""
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    yield CompletionResponse(text=text, delta=chunk.choices[0].delta.content)

        return gen()


def _from_sdk(event: Any) -> bool:
    return isinstance(event.payload.get(P.RESPONSE), dict)


@pytest.fixture
def api():
    with LoopbackAPI() as server:
        yield server


@pytest.fixture
def setup(api, make_manager, recorder):
    manager = make_manager(recorder)
    callbacks_openai.instrument(manager)
    debug = LlamaDebugHandler(print_trace_on_end=False)
    llm = LoopbackOpenAI(
        base_url=f"{api.url}/v1",
        callback_manager=LlamaCallbackManager([CallbacksHandler(manager), debug]),
    )
    yield manager, llm, debug
    callbacks_openai.uninstrument()


def test_sdk_call_inside_a_llama_index_llm_event_is_reported_once(api, setup, recorder):
    manager, llm, debug = setup
    api.queue(Reply(chat_completion("Paris", usage=openai_usage(9, 1))))
    api.queue(Reply(chat_completion("Rome", usage=openai_usage(8, 1))))
    client = openai.OpenAI(api_key="sk-test", base_url=f"{api.url}/v1", max_retries=0)

    with manager.as_trace("question"):
        answer = llm.complete("Capital of France?")
        direct = client.chat.completions.create(  # the app's own call, outside LlamaIndex
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of Italy?"}]
        )

    assert answer.text == "Paris" and direct.choices[0].message.content == "Rome"
    assert len(api.requests) == 2
    llama_calls = len(debug.get_event_pairs(CBEventType.LLM))
    assert llama_calls == 1
    ends = recorder.ends(EventType.LLM)
    assert len(ends) == llama_calls + 1  # LlamaIndex's event and the direct SDK call, no more
    sdk = [e for e in ends if _from_sdk(e)]
    bridged = [e for e in ends if not _from_sdk(e)]
    assert len(bridged) == 1 and bridged[0].full_payload[P.COMPLETION].text == "Paris"
    assert len(sdk) == 1 and sdk[0].payload[P.RESPONSE]["message"]["content"] == "Rome"


def test_streamed_sdk_call_inside_a_llama_index_stream_is_reported_once(api, setup, recorder):
    manager, llm, debug = setup
    api.queue(Reply(events=chat_stream(["Pa", "ris"], openai_usage(9, 2))))

    with manager.as_trace("question"):
        text = "".join(r.delta for r in llm.stream_complete("Capital of France?"))

    assert text == "Paris"
    assert len(debug.get_event_pairs(CBEventType.LLM)) == 1
    ends = recorder.ends(EventType.LLM)
    assert len(ends) == 1
    assert not _from_sdk(ends[0])  # the bridge's event


def test_without_the_guard_the_call_would_be_reported_twice(api, setup, recorder, monkeypatch):
    """The suppression is what keeps the count right (the guard broken on purpose)."""
    manager, llm, _ = setup
    monkeypatch.setattr(_guard, "suppressed", lambda manager, event_type: False)
    api.queue(Reply(chat_completion("Paris")))

    with manager.as_trace("question"):
        llm.complete("Capital of France?")

    ends = recorder.ends(EventType.LLM)
    assert len(ends) == 2
    sdk = next(e for e in ends if _from_sdk(e))
    bridged = next(e for e in ends if not _from_sdk(e))
    assert sdk.parent_id == bridged.id  # it would nest under LlamaIndex's event
