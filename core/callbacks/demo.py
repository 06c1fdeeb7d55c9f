"""``callbacks demo``: an offline retrieval-augmented QA pipeline that exercises every event type.

The pipeline indexes the Markdown files in :mod:`callbacks.demo_docs` (node parsing, chunking,
embedding in a context-propagating thread pool), then answers questions concurrently with asyncio:
sub-questions, retrieval, reranking, templating, LLM calls, synthesis, a tree summary and an agent
step whose tools are called (one of them fails and the failure is handled and reported as an
``exception`` event). The only stand-ins are a deterministic LLM and a hashed bag-of-words
embedding, in place of the user's own models; everything else is the public ``callbacks`` API.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from .config import load_config
from .events import EventPayload, EventType
from .manager import CallbackManager
from .trace import ContextThreadPoolExecutor, Trace

__all__ = ["DemoReport", "HashedEmbedding", "StandInLLM", "main", "run_demo"]

P = EventPayload

QUESTIONS: tuple[str, ...] = (
    "How do honeybees tell each other where flowers are, and how do sailors tell one "
    "lighthouse from another?",
    "What makes black tea different from green tea, and how do scientists forecast eruptions?",
    "Who invented the Fresnel lens, and how long does a worker bee live?",
    "What is a shield volcano, and what is oolong tea?",
)
"""The demo's questions, asked in turn (``questions`` larger than this cycles through them)."""

_STOPWORDS = frozenset(
    "a an and are as at be by do does each for from how in is it its of on one or the their "
    "them they this to what when where which who why with".split()
)


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOPWORDS]


# -- stand-ins for the user's models ------------------------------------------------------------


class HashedEmbedding:
    """A deterministic embedding: content words hashed into a small normalised vector."""

    model_name = "hashed-bow-64"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def embed(self, text: str) -> list[float]:
        """The vector of one text."""
        vector = [0.0] * self.dim
        for word in _words(text):
            digest = hashlib.sha1(word.encode()).digest()
            vector[digest[0] % self.dim] += 1.0 if digest[1] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [round(v / norm, 6) for v in vector]


class StandInLLM:
    """A deterministic LLM. It reads the task line of each prompt and answers extractively from
    the context it is given. Chat calls report OpenAI-style usage and tree summaries
    Anthropic-style usage; plain completions and the agent's closing chat report none, so the
    tokens plugin counts those with tiktoken."""

    completion_model = "gpt-3.5-turbo"
    summary_model = "claude-3-haiku"
    chat_model = "gpt-4o-mini"
    closing_chat_model = "gpt-4"

    async def complete(self, prompt: str) -> tuple[str, dict[str, int] | None]:
        """The completion of ``prompt`` and the usage the provider would report (or ``None``)."""
        await asyncio.sleep(0)  # yield, as a network call would, so queries interleave
        task = _section(prompt, "Task")
        if task == "sub-questions":
            question = _section(prompt, "Question")
            parts = [p.strip(" ?") for p in re.split(r",\s*and\s+", question) if p.strip(" ?")]
            return "\n".join(p[0].upper() + p[1:] + "?" for p in parts), None
        if task == "summarize":
            answers = [line[2:] for line in prompt.splitlines() if line.startswith("- ")]
            text = " ".join(answers)
            usage = {"input_tokens": _approx_tokens(prompt), "output_tokens": _approx_tokens(text)}
            return text, usage
        return _best_sentence(_section(prompt, "Question"), _section(prompt, "Context")), None

    async def chat(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """A chat response (``{"message": ..., "usage": ...}``): tool calls first, then an answer
        that uses the tools' results."""
        await asyncio.sleep(0)
        last = messages[-1]
        prompt_text = " ".join(str(m.get("content") or "") for m in messages)
        if last["role"] == "user":
            summary = str(last["content"]).split("Draft answer: ", 1)[-1]
            topic = (_words(summary) or ["topic"])[0]
            calls = [
                _tool_call("call_1", "word_count", {"text": summary}),
                _tool_call("call_2", "fetch_source", {"url": f"https://example.org/{topic}"}),
            ]
            message = {"role": "assistant", "content": "", "tool_calls": calls}
            usage = {
                "prompt_tokens": _approx_tokens(prompt_text),
                "completion_tokens": _approx_tokens(json.dumps(calls)),
            }
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            return {"message": message, "usage": usage}
        results = [str(m.get("content")) for m in messages if m.get("role") == "tool"]
        draft = str(messages[1]["content"]).split("Draft answer: ", 1)[-1]
        content = f"{draft} ({'; '.join(results)})"
        return {"message": {"role": "assistant", "content": content}}


def _approx_tokens(text: str) -> int:
    return max(1, len(text.split()) * 4 // 3)


def _tool_call(call_id: str, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, sort_keys=True)},
    }


def _section(prompt: str, name: str) -> str:
    """The text after ``name:`` up to the next ``Word:`` line (sections of the templates)."""
    match = re.search(rf"^{name}:(.*?)(?=^[A-Z]\w*:|\Z)", prompt, re.M | re.S)
    return match.group(1).strip() if match else ""


def _best_sentence(question: str, context: str) -> str:
    wanted = set(_words(question))
    sentences = [s.strip() for s in context.splitlines() if s.strip()]
    if not sentences:
        return "I do not know."
    return max(sentences, key=lambda s: (len(wanted & set(_words(s))), -sentences.index(s)))


# -- the tools the agent can call ---------------------------------------------------------------


class ToolError(RuntimeError):
    """A tool failed; the agent reports it to the LLM and carries on."""


def _word_count(text: str) -> str:
    return f"{len(text.split())} words"


def _fetch_source(url: str) -> str:
    raise ToolError(f"cannot fetch {url}: the demo runs offline")


TOOLS: dict[str, tuple[Any, dict[str, Any]]] = {
    "word_count": (
        _word_count,
        {
            "type": "function",
            "function": {
                "name": "word_count",
                "description": "Count the words of a text.",
                "parameters": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                },
            },
        },
    ),
    "fetch_source": (
        _fetch_source,
        {
            "type": "function",
            "function": {
                "name": "fetch_source",
                "description": "Fetch a web page that supports the answer.",
                "parameters": {
                    "type": "object",
                    "properties": {"url": {"type": "string"}},
                    "required": ["url"],
                },
            },
        },
    ),
}

# -- the pipeline --------------------------------------------------------------------------------

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


def load_documents() -> dict[str, str]:
    """The sample documents shipped in :mod:`callbacks.demo_docs`, ``{file name: text}``."""
    folder = resources.files("callbacks.demo_docs")
    return {
        item.name: item.read_text(encoding="utf-8")
        for item in sorted(folder.iterdir(), key=lambda i: i.name)
        if item.name.endswith(".md")
    }


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
        prompt = self._template(SUB_QUESTION_TEMPLATE, question=question)
        text = await self._complete(prompt, self.llm.completion_model)
        return [line for line in text.splitlines() if line.strip()]

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
        wanted = set(_words(query))
        ranked = sorted(
            nodes, key=lambda n: (-len(wanted & set(_words(n["text"]))), -n["score"], n["id"])
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


# -- running and reporting -----------------------------------------------------------------------


@dataclass
class DemoReport:
    """What one demo run did and produced."""

    questions: list[str]
    answers: list[str]
    event_counts: dict[str, int]
    """Events per type, over every trace of the run."""
    trace_ids: list[str]
    tokens: dict[str, int] | None
    """The tokens plugin's totals (prompt, completion, total, embedding, llm_calls,
    embedding_calls), or ``None`` when that plugin is not registered."""
    tokens_by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    tokens_by_model: dict[str, dict[str, int]] = field(default_factory=dict)
    finetuning_path: Path | None = None
    finetuning_lines: int = 0
    out_dir: Path = Path("callbacks-out")
    plugins: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (paths as strings)."""
        data = asdict(self)
        data["finetuning_path"] = str(self.finetuning_path) if self.finetuning_path else None
        data["out_dir"] = str(self.out_dir)
        return data


def _set_wandb_env_defaults(out_dir: Path) -> None:
    """Keep wandb offline and under ``out_dir`` unless the user chose otherwise (wandb itself
    reads these variables)."""
    wandb_dir = str((out_dir / "wandb").resolve())
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        os.environ.setdefault(name, wandb_dir)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")


def _demo_config(out_dir: Path, questions: int) -> dict[str, Any]:
    """The demo's own settings, plus sink defaults for keys the user set in no source: the Aim
    repository under ``out_dir``, and no OTLP export (with no collector listening, it would
    fail on every span)."""
    finetuning = out_dir / "finetuning.jsonl"
    config: dict[str, Any] = {
        "finetuning": {"path": str(finetuning)},
        "debug": {"max_traces": max(100, questions + 1)},
    }
    user = load_config().sections
    sink_defaults = {
        "aim": {"repo": str((out_dir / "aim").resolve())},
        "openinference": {"exporter": "none"},
    }
    for plugin, defaults in sink_defaults.items():
        chosen = user.get(plugin, {})
        picked = {key: value for key, value in defaults.items() if key not in chosen}
        if picked:
            config[plugin] = picked
    return config


def _build_manager(out_dir: Path, questions: int) -> CallbackManager:
    _set_wandb_env_defaults(out_dir)
    (out_dir / "finetuning.jsonl").unlink(missing_ok=True)  # the plugin appends; one run, one file
    return CallbackManager(load_entrypoints=True, config=_demo_config(out_dir, questions))


def _run_async(coro_factory: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    # Called from a running loop (a notebook): run ours in a thread that carries the context.
    with ContextThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()


def run_demo(
    *,
    questions: int = 3,
    concurrency: int = 1,
    out_dir: Path = Path("callbacks-out"),
    manager: CallbackManager | None = None,
    stream: TextIO = sys.stdout,
) -> DemoReport:
    """Index the sample documents, answer ``questions`` questions (``concurrency`` at a time, with
    asyncio), then print the timing table and token counts and write ``summary.json`` to
    ``out_dir``. Without ``manager``, one is built with every installed, active plugin (the
    fine-tuning JSONL goes to ``out_dir``) and shut down at the end; optional plugins are pointed
    at ``out_dir`` through defaults the user did not override (``WANDB_*``, the aim repo,
    ``CALLBACKS_OPENINFERENCE__EXPORTER=none``) unless those are already set. A given
    ``manager`` is used as is (its debug plugin prints where it was set up to) and left open."""
    if questions < 1 or concurrency < 1:
        raise ValueError(
            f"questions and concurrency must be at least 1, got {questions} and {concurrency}"
        )
    began = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    owned = manager is None
    cm = _build_manager(out_dir, questions) if manager is None else manager
    debug = cm.get_plugin("debug")
    if owned and debug is not None:
        debug.stream = stream
    asked = [QUESTIONS[i % len(QUESTIONS)] for i in range(questions)]
    stream.write(
        f"callbacks demo: {questions} question(s), concurrency {concurrency}, "
        f"plugins: {', '.join(cm.list_plugins()) or 'none'}\n\n"
    )
    try:
        pipeline = Pipeline(cm)
        traces = [pipeline.build_index(load_documents())]

        async def answer_all() -> list[tuple[str, Trace]]:
            gate = asyncio.Semaphore(concurrency)

            async def one(question: str) -> tuple[str, Trace]:
                async with gate:
                    return await pipeline.answer(question)

            return await asyncio.gather(*(one(q) for q in asked))

        results = _run_async(answer_all)
        traces += [trace for _, trace in results]
        report = _report(cm, asked, [answer for answer, _ in results], traces, out_dir)
        _print_report(cm, report, stream)
    finally:
        if owned:
            cm.shutdown()
    report.wall_time_s = round(time.perf_counter() - began, 3)
    summary = out_dir / "summary.json"
    summary.write_text(json.dumps(report.to_json(), indent=2, sort_keys=True), encoding="utf-8")
    stream.write(f"Summary:          {summary}\nWall time:        {report.wall_time_s:.2f} s\n")
    stream.flush()
    return report


def _report(
    cm: CallbackManager,
    asked: list[str],
    answers: list[str],
    traces: list[Trace],
    out_dir: Path,
) -> DemoReport:
    counts: dict[str, int] = {}
    for trace in traces:
        for event_type, n in trace.counts.items():
            counts[event_type.value] = counts.get(event_type.value, 0) + n
    report = DemoReport(
        questions=asked,
        answers=answers,
        event_counts=dict(sorted(counts.items())),
        trace_ids=[t.id for t in traces],
        tokens=None,
        out_dir=out_dir,
        plugins=list(cm.list_plugins()),
    )
    tokens = cm.get_plugin("tokens")
    if tokens is not None:
        report.tokens = tokens.totals().as_dict()
        report.tokens_by_source = {k: v.as_dict() for k, v in tokens.totals_by_source().items()}
        report.tokens_by_model = {k: v.as_dict() for k, v in tokens.totals_by_model().items()}
    finetuning = cm.get_plugin("finetuning")
    if finetuning is not None:
        report.finetuning_lines = len(finetuning.finetuning_events)
        report.finetuning_path = finetuning.path
    return report


def _print_report(cm: CallbackManager, report: DemoReport, stream: TextIO) -> None:
    debug = cm.get_plugin("debug")
    write = stream.write
    if debug is not None:
        debug.get_events()  # wait until every tree is printed before the tables
        write("\nTiming per event type (ms)\n")
        write(f"{'event type':<14}{'count':>7}{'total':>10}{'mean':>9}{'p50':>9}{'p95':>9}\n")
        for event_type in EventType:
            info = debug.get_event_time_info(event_type)
            if info.count:
                write(
                    f"{event_type.value:<14}{info.count:>7}{info.total * 1e3:>10.2f}"
                    f"{info.mean * 1e3:>9.3f}{info.p50 * 1e3:>9.3f}{info.p95 * 1e3:>9.3f}\n"
                )
    if report.tokens is not None:
        t = report.tokens
        write(
            f"\nTokens (tokens plugin)\n"
            f"LLM: prompt {t['prompt']}, completion {t['completion']}, total {t['total']} "
            f"in {t['llm_calls']} calls\n"
            f"Embedding: {t['embedding']} in {t['embedding_calls']} calls\n"
        )
        for source, totals in sorted(report.tokens_by_source.items()):
            write(
                f"  {source:<16} LLM {totals['total']:>6} ({totals['llm_calls']} calls)"
                f"  embedding {totals['embedding']:>6}\n"
            )
    write("\nFiles\n")
    if report.finetuning_path is not None:
        write(f"Fine-tuning JSONL: {report.finetuning_path} ({report.finetuning_lines} lines)\n")
    plugins = cm.list_plugins()
    if "wandb" in plugins:
        write(f"W&B (offline):    {os.environ.get('WANDB_DIR', '.')}\n")
    if "aim" in plugins:
        write(f"Aim repository:   {getattr(cm.plugin_settings('aim'), 'repo', None) or '.aim'}\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m callbacks.demo [--questions N] [--concurrency N] [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m callbacks.demo", description="Run the offline callbacks demo pipeline."
    )
    parser.add_argument("--questions", type=int, default=3, help="questions to answer (default 3)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="questions answered at once (default 1)"
    )
    parser.add_argument("--out", type=Path, default=Path("callbacks-out"), help="output directory")
    args = parser.parse_args(argv)
    if args.questions < 1 or args.concurrency < 1:
        parser.error("--questions and --concurrency must be at least 1")
    run_demo(questions=args.questions, concurrency=args.concurrency, out_dir=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
