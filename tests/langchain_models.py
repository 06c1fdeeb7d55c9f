"""A small LangChain app for the bridge's tests (here and in the sinks' ``test_langchain.py``):
a retriever over four documents, a RAG chain, two tools, and a deterministic chat model that
stands for the user's own model. The model replies from the conversation, reports usage the way
providers do (``usage_metadata``, on the last chunk when streaming), calls the tools bound with
``bind_tools``, streams word by word, and really awaits in async calls (optionally at a gate
that holds every call until a number of them are in flight at once)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import Field

from callbacks import EventType

TEXTS = [
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "The Seine flows through Paris.",
    "Rome is the capital of Italy.",
]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def build_retriever() -> Any:
    """A real vector-store retriever (in memory, deterministic embeddings), top 2."""
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(
        [Document(t, id=f"doc-{i}", metadata={"n": i}) for i, t in enumerate(TEXTS)]
    )
    return store.as_retriever(search_kwargs={"k": 2})


def rag_chain(retriever: Any, model: Any) -> Any:
    """retriever -> joined context, with the question -> prompt -> model -> string."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context.\n{context}"), ("human", "{question}")]
    )
    join = RunnableLambda(lambda docs: "\n".join(d.page_content for d in docs)).with_config(
        run_name="join_docs"
    )
    return (
        RunnableParallel(context=retriever | join, question=RunnablePassthrough())
        | prompt
        | model
        | StrOutputParser()
    )


def walk(runs: list[Any]) -> Iterator[Any]:
    """Every run of LangChain's run trees, depth first."""
    for run in runs:
        yield run
        yield from walk(run.child_runs)


def expected_type(run: Any) -> EventType:
    """The event type the issue's mapping gives a LangChain run (LangChain's own run)."""
    if run.run_type in ("llm", "chat_model"):
        return EventType.LLM
    if run.run_type == "retriever":
        return EventType.RETRIEVE
    if run.run_type == "tool":
        return EventType.FUNCTION_CALL
    if run.run_type == "prompt":
        return EventType.TEMPLATING
    tags = run.tags or []
    if run.name in ("agent", "model") and any(t.startswith("graph:step:") for t in tags):
        return EventType.AGENT_STEP
    return EventType.CHAIN


class Gate:
    """Holds async model calls until ``parties`` of them are waiting at once."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.waiting = 0
        self.most_in_flight = 0
        self._open: asyncio.Event | None = None

    async def arrive(self) -> None:
        if self._open is None:
            self._open = asyncio.Event()
        self.waiting += 1
        self.most_in_flight = max(self.most_in_flight, self.waiting)
        if self.waiting >= self.parties:
            self._open.set()
        await self._open.wait()


def _words(text: str) -> int:
    return len(text.split())


class ScriptedChatModel(GenericFakeChatModel):
    """Replies ``"Answer: <last user text>"``; with tools bound, first calls each tool with
    ``tool_args[name]``, then answers with the tools' results."""

    messages: Iterator[AIMessage | str] = iter(())
    model_name: str = "scripted-1"
    tool_args: dict[str, dict[str, Any]] = Field(default_factory=dict)
    report_usage: bool = True
    gate: Any = None
    fail_with: str | None = None

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]] | None) -> AIMessage:
        if self.fail_with is not None:
            raise RuntimeError(self.fail_with)
        results = [m for m in messages if isinstance(m, ToolMessage)]
        calls: list[dict[str, Any]] = []
        if tools and not results:
            for i, tool in enumerate(tools):
                name = tool["function"]["name"]
                calls.append(
                    {"name": name, "args": self.tool_args.get(name, {}), "id": f"call_{i}"}
                )
            content = ""
        elif results:
            content = "Results: " + ", ".join(str(r.content) for r in results)
        else:
            content = f"Answer: {messages[-1].text}"
        prompt_tokens = sum(_words(str(m.content)) for m in messages)
        completion_tokens = _words(content) + sum(len(json.dumps(c["args"])) for c in calls)
        usage = (
            {
                "input_tokens": prompt_tokens,
                "output_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            if self.report_usage
            else None
        )
        return AIMessage(
            content=content,
            tool_calls=calls,
            usage_metadata=usage,
            response_metadata={"model_name": self.model_name},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(
            generations=[ChatGeneration(message=self._reply(messages, kwargs.get("tools")))]
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.gate is not None:
            await self.gate.arrive()
        await asyncio.sleep(0.001)
        return self._generate(messages, stop, None, **kwargs)

    def _chunks(self, message: AIMessage) -> Iterator[AIMessageChunk]:
        for piece in re.split(r"(\s)", str(message.content)):
            if piece:
                yield AIMessageChunk(content=piece)
        yield AIMessageChunk(
            content="",
            tool_call_chunks=[
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(message.tool_calls)
            ],
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
            chunk_position="last",
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._reply(messages, kwargs.get("tools"))):
            generation = ChatGenerationChunk(message=chunk)
            if run_manager is not None:
                run_manager.on_llm_new_token(str(chunk.content), chunk=generation)
            yield generation

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.gate is not None:
            await self.gate.arrive()
        for chunk in self._chunks(self._reply(messages, kwargs.get("tools"))):
            await asyncio.sleep(0)
            generation = ChatGenerationChunk(message=chunk)
            if run_manager is not None:
                await run_manager.on_llm_new_token(str(chunk.content), chunk=generation)
            yield generation

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"
