"""Stand-ins for the user's models: a deterministic LLM and a hashed bag-of-words embedding."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["HashedEmbedding", "StandInLLM", "content_words"]

_STOPWORDS = frozenset(
    "a an and are as at be by do does each for from how in is it its of on one or the their "
    "them they this to what when where which who why with".split()
)


def content_words(text: str) -> list[str]:
    """The lower-cased words of ``text``, stopwords left out."""
    return [w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOPWORDS]


class HashedEmbedding:
    """A deterministic embedding: content words hashed into a small normalised vector."""

    model_name = "hashed-bow-64"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def embed(self, text: str) -> list[float]:
        """The vector of one text."""
        vector = [0.0] * self.dim
        for word in content_words(text):
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
            topic = (content_words(summary) or ["topic"])[0]
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
    wanted = set(content_words(question))
    sentences = [s.strip() for s in context.splitlines() if s.strip()]
    if not sentences:
        return "I do not know."
    return max(sentences, key=lambda s: (len(wanted & set(content_words(s))), -sentences.index(s)))
