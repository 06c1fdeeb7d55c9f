"""Count tokens of texts and chat messages with a tokenizer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from callbacks.payloads import Message

__all__ = [
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NAME",
    "REPLY_PRIMING_TOKENS",
    "Tokenizer",
    "count_messages",
    "count_text",
]

Tokenizer = Callable[[str], Sequence[Any] | int]
"""A callable that turns text into tokens (any sequence, counted by ``len``) or a token count."""

# OpenAI cookbook, "How to count tokens with tiktoken", for the gpt-3.5-turbo/gpt-4 family on.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


def count_text(tokenizer: Tokenizer, text: str | None) -> int:
    """Tokens in ``text``; 0 for ``None`` or ``""``."""
    if not text:
        return 0
    tokens = tokenizer(text)
    return tokens if isinstance(tokens, int) else len(tokens)


def count_messages(tokenizer: Tokenizer, messages: Iterable[Message]) -> int:
    """Tokens of a chat prompt: each message's role, content and name, plus the per-message
    overhead and the reply priming that OpenAI's chat format adds."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        total += count_text(tokenizer, message.role)
        total += count_text(tokenizer, message.content)
        if message.tool_calls:
            total += count_text(tokenizer, tool_calls_text(message.tool_calls))
        if message.name:
            total += TOKENS_PER_NAME + count_text(tokenizer, message.name)
    return total


def tool_calls_text(tool_calls: Iterable[Any]) -> str:
    """Tool calls as the JSON text a model emits for them (the best local estimate)."""
    return json.dumps(list(tool_calls), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
