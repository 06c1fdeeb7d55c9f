"""Records of counted calls, and running totals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["EmbeddingTokenCount", "LLMTokenCount", "TokenTotals"]


class LLMTokenCount(NamedTuple):
    """Tokens of one LLM call and where the figures came from."""

    prompt: int
    completion: int
    total: int
    model: str | None
    trace_id: str
    event_id: str
    source: str
    """``"usage:openai"``, ``"usage:anthropic"``, ``"usage:gemini"`` (provider-reported),
    ``"tiktoken"`` or ``"tokenizer"`` (a user-supplied tokenizer)."""
    encoding: str | None = None
    """The tiktoken encoding used, when ``source`` is ``"tiktoken"``."""

    @property
    def prompt_token_count(self) -> int:
        """LlamaIndex's name for :attr:`prompt`."""
        return self.prompt

    @property
    def completion_token_count(self) -> int:
        """LlamaIndex's name for :attr:`completion`."""
        return self.completion

    @property
    def total_token_count(self) -> int:
        """LlamaIndex's name for :attr:`total`."""
        return self.total


class EmbeddingTokenCount(NamedTuple):
    """Tokens of the texts of one embedding call."""

    tokens: int
    model: str | None
    trace_id: str
    event_id: str
    source: str
    encoding: str | None = None

    @property
    def total_token_count(self) -> int:
        """LlamaIndex's name for :attr:`tokens`."""
        return self.tokens


@dataclass
class TokenTotals:
    """Running totals for one model, trace or the whole plugin."""

    prompt: int = 0
    completion: int = 0
    total: int = 0
    """LLM tokens as reported per call (usually prompt + completion)."""
    embedding: int = 0
    llm_calls: int = 0
    embedding_calls: int = 0

    def add_llm(self, record: LLMTokenCount) -> None:
        """Add one LLM call."""
        self.prompt += record.prompt
        self.completion += record.completion
        self.total += record.total
        self.llm_calls += 1

    def add_embedding(self, record: EmbeddingTokenCount) -> None:
        """Add one embedding call."""
        self.embedding += record.tokens
        self.embedding_calls += 1

    def as_dict(self) -> dict[str, int]:
        """The totals as plain JSON-ready numbers."""
        return {
            "prompt": self.prompt,
            "completion": self.completion,
            "total": self.total,
            "embedding": self.embedding,
            "llm_calls": self.llm_calls,
            "embedding_calls": self.embedding_calls,
        }
