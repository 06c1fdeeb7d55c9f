"""The demo's traced pipeline: indexing, retrieval-augmented answering and an agent step, each
step reported as events through a :class:`callbacks.CallbackManager`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from callbacks import (
    CallbackManager,
    ContextThreadPoolExecutor,
    EventPayload,
    EventType,
    Trace,
)

from .standins import HashedEmbedding, StandInLLM, content_words
from .tools import TOOLS, ToolError

__all__ = ["Pipeline"]

P = EventPayload

SUB_QUESTION_TEMPLATE = (
    "Task: sub-questions\nInstructions: split the question into simpler ones, one per line.\n"
    "Question: {question}\n"
)
ANSWER_TEMPLATE = (
    "Task: answer\nInstructions: answer from the context only.\nContext:\n{context}\n"
    "Question: {question}\n"
)
SUMMARY_TEMPLATE = (
    "Task: summarize\nInstructions: combine the answers into one.\nQuestion: {question}\n"
    "Answers:\n{answers}\n"
)
AGENT_SYSTEM_PROMPT = "You check answers with tools before giving them."


class Pipeline:
    """The demo's RAG pipeline and agent, emitting events through ``manager``."""

    def __init__(self, manager: CallbackManager, top_k: int = 4, top_n: int = 2) -> None:
        self.cm = manager
        self.llm = StandInLLM()
        self.embedding = HashedEmbedding()
        self.top_k = top_k
        self.top_n = top_n
        self.index: list[tuple[dict[str, Any], list[float]]] = []
        self.chunk = manager.traced(
            EventType.CHUNKING,
            payload=lambda name, text: {P.DOCUMENTS: [text]},
            output_key=P.CHUNKS,
        )(self._chunk)
        self.rerank = manager.traced(
            EventType.RERANKING,
            payload=lambda query, nodes: {P.QUERY_STR: query, P.NODES: nodes, P.TOP_K: self.top_n},
        )(self._rerank)

    # -- indexing ---------------------------------------------------------------------------

    def build_index(self, documents: Mapping[str, str]) -> Trace:
        """Parse the documents into nodes and embed them (in a thread pool that carries the
        trace into its threads)."""
        with self.cm.as_trace("index") as trace:
            with self.cm.event(EventType.NODE_PARSING, {P.DOCUMENTS: list(documents)}) as parsing:
                nodes = [
                    {"id": f"{name}#{i}", "text": text, "metadata": {"source": name}}
                    for name, body in documents.items()
                    for i, text in enumerate(self.chunk(name, body))
                ]
                parsing.on_end({P.NODES: nodes})
            batches = [nodes[i : i + 8] for i in range(0, len(nodes), 8)]
            with ContextThreadPoolExecutor(max_workers=2) as pool:
                vectors = [v for batch in pool.map(self._embed_nodes, batches) for v in batch]
            self.index = list(zip(nodes, vectors, strict=True))
        return trace

    @staticmethod
    def _chunk(name: str, text: str) -> list[str]:
        sentences = [line.strip() for line in text.splitlines() if line.strip()]
        sentences = [s for s in sentences if not s.startswith("#")]
        return [" ".join(sentences[i : i + 2]) for i in range(0, len(sentences), 2)]

    def _embed_nodes(self, nodes: list[dict[str, Any]]) -> list[list[float]]:
        return self._embed([n["text"] for n in nodes])

    def _embed(self, texts: list[str]) -> list[list[float]]:
        start: dict[str, Any] = {P.EMBEDDING_MODEL_NAME: self.embedding.model_name}
        with self.cm.event(EventType.EMBEDDING, start) as event:
            vectors = [self.embedding.embed(t) for t in texts]
            event.on_end({P.CHUNKS: texts, P.EMBEDDINGS: vectors})
        return vectors

    # -- querying ---------------------------------------------------------------------------

    async def answer(self, question: str) -> tuple[str, Trace]:
        """Answer one question in its own trace."""
        async with self.cm.as_trace("query") as trace:
            with self.cm.event(EventType.QUERY, {P.QUERY_STR: question}) as query:
                sub_questions = await self._sub_questions(question)
                answers = []
                for sub_question in sub_questions:
                    with self.cm.event(EventType.SUB_QUESTION, {P.QUERY_STR: sub_question}) as sq:
                        nodes = self.rerank(sub_question, self._retrieve(sub_question))
                        answer = await self._synthesize(sub_question, nodes)
                        sq.on_end({P.RESPONSE: answer})
                    answers.append(answer)
                draft = await self._tree_summarize(question, answers)
                final = await self._agent_step(question, draft)
                query.on_end({P.RESPONSE: final})
        return final, trace

    def _template(self, template: str, **variables: str) -> str:
        with self.cm.event(
            EventType.TEMPLATING, {P.TEMPLATE: template, P.TEMPLATE_VARS: variables}
        ) as event:
            prompt = template.format(**variables)
            event.on_end({P.PROMPT: prompt})
        return prompt

    async def _complete(self, prompt: str, model: str) -> str:
        start: dict[str, Any] = {
            P.PROMPT: prompt,
            P.MODEL_NAME: model,
            P.INVOCATION_PARAMETERS: {"temperature": 0},
        }
        with self.cm.event(EventType.LLM, start) as event:
            text, usage = await self.llm.complete(prompt)
            event.on_end({P.COMPLETION: text, **({P.USAGE: usage} if usage else {})})
        return text

    async def _chat(self, messages: list[dict[str, Any]], model: str) -> dict[str, Any]:
        tools = [spec for _, spec in TOOLS.values()]
        start: dict[str, Any] = {P.MESSAGES: list(messages), P.TOOLS: tools, P.MODEL_NAME: model}
        with self.cm.event(EventType.LLM, start) as event:
            response = await self.llm.chat(messages, tools)
            event.on_end({P.RESPONSE: response})
        return response

    async def _sub_questions(self, question: str) -> list[str]:
        with self.cm.event(EventType.CHAIN, {P.QUERY_STR: question}) as chain:
            prompt = self._template(SUB_QUESTION_TEMPLATE, question=question)
            text = await self._complete(prompt, self.llm.completion_model)
            sub_questions = [line for line in text.splitlines() if line.strip()]
            chain.on_end({P.RESPONSE: sub_questions})
        return sub_questions

    def _retrieve(self, query: str) -> list[dict[str, Any]]:
        with self.cm.event(EventType.RETRIEVE, {P.QUERY_STR: query, P.TOP_K: self.top_k}) as event:
            (vector,) = self._embed([query])
            scored = sorted(
                ((sum(a * b for a, b in zip(vector, v, strict=True)), n) for n, v in self.index),
                key=lambda pair: (-pair[0], pair[1]["id"]),
            )[: self.top_k]
            nodes = [{**node, "score": round(score, 4)} for score, node in scored]
            event.on_end({P.NODES: nodes})
        return nodes

    def _rerank(self, query: str, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        wanted = set(content_words(query))
        ranked = sorted(
            nodes,
            key=lambda n: (-len(wanted & set(content_words(n["text"]))), -n["score"], n["id"]),
        )
        return ranked[: self.top_n]

    async def _synthesize(self, question: str, nodes: list[dict[str, Any]]) -> str:
        with self.cm.event(EventType.SYNTHESIZE, {P.QUERY_STR: question, P.NODES: nodes}) as event:
            context = "\n".join(
                sentence for n in nodes for sentence in re.split(r"(?<=\.)\s+", n["text"])
            )
            prompt = self._template(ANSWER_TEMPLATE, context=context, question=question)
            answer = await self._complete(prompt, self.llm.completion_model)
            event.on_end({P.RESPONSE: answer})
        return answer

    async def _tree_summarize(self, question: str, answers: list[str]) -> str:
        with self.cm.event(EventType.TREE, {P.CHUNKS: answers, P.QUERY_STR: question}) as event:
            listing = "\n".join(f"- {a}" for a in answers)
            prompt = self._template(SUMMARY_TEMPLATE, question=question, answers=listing)
            summary = await self._complete(prompt, self.llm.summary_model)
            event.on_end({P.RESPONSE: summary})
        return summary

    async def _agent_step(self, question: str, draft: str) -> str:
        with self.cm.event(EventType.AGENT_STEP, {P.QUERY_STR: question}) as step:
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": AGENT_SYSTEM_PROMPT},
                {"role": "user", "content": f"Question: {question}\nDraft answer: {draft}"},
            ]
            reply = (await self._chat(messages, self.llm.chat_model))["message"]
            messages.append(reply)
            for call in reply.get("tool_calls", []):
                output = self._call_tool(call)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": output})
            final = (await self._chat(messages, self.llm.closing_chat_model))["message"]
            step.on_end({P.RESPONSE: final["content"]})
        return str(final["content"])

    def _call_tool(self, call: Mapping[str, Any]) -> str:
        name = call["function"]["name"]
        function, spec = TOOLS[name]
        arguments = call["function"]["arguments"]
        with self.cm.event(
            EventType.FUNCTION_CALL, {P.FUNCTION_CALL: arguments, P.TOOL: spec["function"]}
        ) as event:
            try:
                output = function(**json.loads(arguments))
            except ToolError as error:
                with self.cm.event(EventType.EXCEPTION, {P.EXCEPTION: error, P.TOOL: name}):
                    pass
                output = f"{name} failed: {error}"
            event.on_end({P.FUNCTION_OUTPUT: output})
        return str(output)
