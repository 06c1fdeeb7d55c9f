"""A deterministic stand-in for the user's own model, for the LlamaIndex tests.

Unlike ``MockLLM`` it behaves like a real provider client where the bridge can break: its async
methods really await (so concurrent queries interleave), its streams yield chunk by chunk through
LlamaIndex's callback decorators (so the LLM event ends when the consumer exhausts the stream),
it reports usage the way OpenAI does (``raw["usage"]``, on the last chunk of a stream), it emits
OpenAI-shaped tool calls (``additional_kwargs["tool_calls"]``) for function-calling agents and
ReAct-formatted text for ReAct agents, and it can fail on demand.

Replies are a pure function of the input, so two runs of a pipeline produce the same events.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import ToolSelection

__all__ = ["CompletionOnlyLLM", "ScriptedLLM", "ScriptedLLMError"]

_WORDS = re.compile(r"\S+\s*")
_REACT_MARKER = "Action Input:"


class ScriptedLLMError(RuntimeError):
    """Raised by a :class:`ScriptedLLM` built with ``fail=True``."""


def _chunks(text: str) -> list[str]:
    return _WORDS.findall(text) or [text]


def _usage(prompt: str, completion: str) -> dict[str, Any]:
    # The model's "own tokenizer": whitespace words, so the figures differ from tiktoken's and a
    # counter that ignores reported usage shows up.
    prompt_tokens, completion_tokens = len(prompt.split()), len(completion.split())
    return {
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    }


class ScriptedLLM(FunctionCallingLLM):
    """Deterministic function-calling chat model.

    ``plan`` lists the tool calls an agent makes, in order, as ``(tool_name, arguments)``: the
    n-th call is emitted when the conversation holds n tool results (function calling) or n
    ``Observation:`` lines (ReAct); after the last, the model answers with the last tool output.
    ``sub_questions`` is the plan a ``SubQuestionQueryEngine`` gets, as ``(question, tool)``.
    ``chat_model=False`` makes LlamaIndex's ``predict`` use ``complete`` (a prompt string) rather
    than ``chat``; ``report_usage=False`` leaves token counting to the tokenizers.
    """

    plan: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)
    sub_questions: list[tuple[str, str]] = Field(default_factory=list)
    report_usage: bool = True
    chat_model: bool = True
    fail: bool = False
    model_name: str = "scripted-1"
    stream_gate: Any = None
    """A ``threading.Event`` a sync chat stream waits on before its last chunk, so a test decides
    when the stream (and its LLM event) ends, e.g. after LlamaIndex ended the trace."""
    _calls: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "ScriptedLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            model_name=self.model_name,
            context_window=16_384,
            num_output=256,
            is_chat_model=self.chat_model,
            is_function_calling_model=True,
        )

    @property
    def calls(self) -> int:
        """Provider calls made so far (one per complete/chat, streamed or not)."""
        return self._calls

    # -- what the model says ----------------------------------------------------------------

    def _count_call(self) -> None:
        with self._lock:
            self._calls += 1
        if self.fail:
            raise ScriptedLLMError("the scripted model is down")

    def _completion_text(self, prompt: str) -> str:
        if "<User Question>" in prompt:
            items = [{"sub_question": q, "tool_name": t} for q, t in self.sub_questions]
            return f"```json\n{json.dumps({'items': items})}\n```"
        if "return the choice that is most relevant" in prompt:
            return json.dumps([{"choice": 1, "reason": "the first choice fits"}])
        if "'ANSWER: <number>'" in prompt:
            return "ANSWER: 1"
        if "A list of documents is shown below" in prompt:  # LLMRerank
            documents = len(re.findall(r"^Document \d+:", prompt, flags=re.MULTILINE))
            return "\n".join(f"Doc: {n}, Relevance: {10 - n}" for n in range(documents, 0, -1))
        words = prompt.split()
        return "Answer: " + " ".join(words[-12:])

    def _chat_reply(self, messages: Sequence[ChatMessage], tools: Any) -> ChatMessage:
        text = "\n".join(m.content or "" for m in messages)
        conversation = "\n".join(m.content or "" for m in messages if m.role != MessageRole.SYSTEM)
        if tools:
            results = [m for m in messages if m.role == MessageRole.TOOL]
            if len(results) < len(self.plan):
                name, arguments = self.plan[len(results)]
                call = {
                    "id": f"call_{len(results)}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
                return ChatMessage(
                    role=MessageRole.ASSISTANT, content="", additional_kwargs={"tool_calls": [call]}
                )
            last = results[-1].content if results else "nothing"
            return ChatMessage(role=MessageRole.ASSISTANT, content=f"The answer is {last}.")
        if _REACT_MARKER in text:
            # The system prompt's format example has an "Observation:" line of its own.
            observations = re.findall(r"Observation: (.*)", conversation)
            if len(observations) < len(self.plan):
                name, arguments = self.plan[len(observations)]
                content = (
                    "Thought: I need to use a tool to help me answer the question.\n"
                    f"Action: {name}\nAction Input: {json.dumps(arguments)}"
                )
            else:
                last = observations[-1] if observations else "nothing"
                content = f"Thought: I can answer without using any more tools.\nAnswer: {last}"
            return ChatMessage(role=MessageRole.ASSISTANT, content=content)
        return ChatMessage(role=MessageRole.ASSISTANT, content=self._completion_text(text))

    def _raw(self, prompt: str, completion: str) -> dict[str, Any] | None:
        return _usage(prompt, completion) if self.report_usage else None

    def _chat_parts(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> tuple[ChatMessage, str, list[str]]:
        self._count_call()
        reply = self._chat_reply(messages, kwargs.get("tools"))
        prompt = "\n".join(f"{m.role.value}: {m.content or ''}" for m in messages)
        return reply, prompt, _chunks(reply.content or "")

    def _stream_chat_responses(
        self, reply: ChatMessage, prompt: str, parts: list[str]
    ) -> Generator[ChatResponse, None, None]:
        text = ""
        for i, part in enumerate(parts):
            text += part
            last = i == len(parts) - 1
            if last and self.stream_gate is not None:
                self.stream_gate.wait(timeout=30)
            message = ChatMessage(
                role=MessageRole.ASSISTANT,
                content=text,
                additional_kwargs=reply.additional_kwargs if last else {},
            )
            yield ChatResponse(
                message=message,
                delta=part,
                raw=self._raw(prompt, reply.content or "") if last else None,
            )

    # -- completion ---------------------------------------------------------------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._count_call()
        text = self._completion_text(prompt)
        return CompletionResponse(text=text, raw=self._raw(prompt, text))

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        await asyncio.sleep(0)
        self._count_call()
        text = self._completion_text(prompt)
        await asyncio.sleep(0)
        return CompletionResponse(text=text, raw=self._raw(prompt, text))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> Generator[CompletionResponse, None, None]:
        self._count_call()
        text = self._completion_text(prompt)
        parts = _chunks(text)

        def gen() -> Generator[CompletionResponse, None, None]:
            so_far = ""
            for i, part in enumerate(parts):
                so_far += part
                last = i == len(parts) - 1
                yield CompletionResponse(
                    text=so_far, delta=part, raw=self._raw(prompt, text) if last else None
                )

        return gen()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> AsyncGenerator[CompletionResponse, None]:
        await asyncio.sleep(0)
        self._count_call()
        text = self._completion_text(prompt)
        parts = _chunks(text)

        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            so_far = ""
            for i, part in enumerate(parts):
                await asyncio.sleep(0)
                so_far += part
                last = i == len(parts) - 1
                yield CompletionResponse(
                    text=so_far, delta=part, raw=self._raw(prompt, text) if last else None
                )

        return gen()

    # -- chat -----------------------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        reply, prompt, _ = self._chat_parts(messages, kwargs)
        return ChatResponse(message=reply, raw=self._raw(prompt, reply.content or ""))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        await asyncio.sleep(0)
        reply, prompt, _ = self._chat_parts(messages, kwargs)
        await asyncio.sleep(0)
        return ChatResponse(message=reply, raw=self._raw(prompt, reply.content or ""))

    @llm_chat_callback()
    def stream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> Generator[ChatResponse, None, None]:
        reply, prompt, parts = self._chat_parts(messages, kwargs)
        return self._stream_chat_responses(reply, prompt, parts)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> AsyncGenerator[ChatResponse, None]:
        await asyncio.sleep(0)
        reply, prompt, parts = self._chat_parts(messages, kwargs)

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            for response in self._stream_chat_responses(reply, prompt, parts):
                await asyncio.sleep(0)
                yield response

        return gen()

    # -- function calling -----------------------------------------------------------------------

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        return {"messages": messages, "tools": list(tools), **kwargs}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        calls = response.message.additional_kwargs.get("tool_calls") or []
        if not calls and error_on_no_tool_call:
            raise ValueError(f"expected a tool call, got {response.message.content!r}")
        return [
            ToolSelection(
                tool_id=call["id"],
                tool_name=call["function"]["name"],
                tool_kwargs=json.loads(call["function"]["arguments"]),
            )
            for call in calls
        ]


class CompletionOnlyLLM(CustomLLM):
    """A completion model that implements only ``complete`` and ``stream_complete``: LlamaIndex's
    ``CustomLLM`` then serves ``chat``, ``stream_chat``, ``astream_chat``... by calling them, so
    one call is several overlapping LLM events, each of which LlamaIndex parents at ``root``."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="completion-only", is_chat_model=False)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="Answer: " + " ".join(prompt.split()[-6:]))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> Generator[CompletionResponse, None, None]:
        text = "Answer: " + " ".join(prompt.split()[-6:])

        def gen() -> Generator[CompletionResponse, None, None]:
            so_far = ""
            for part in _chunks(text):
                so_far += part
                yield CompletionResponse(text=so_far, delta=part)

        return gen()
