"""Token counts of LLM calls: the provider's figures when it reported them, else a tiktoken
estimate (offline encodings from :mod:`callbacks.encodings`), always marked with their source.

Sinks call :func:`llm_token_count` with an LLM end event; the result is cached per event id, so
several sinks recording the same call tokenize it once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .events import EventPayload
from .payloads import Message, assistant_message_of, messages_of, model_of, prompt_of, usage_of

if TYPE_CHECKING:
    from .events import Event

__all__ = [
    "ESTIMATE",
    "PROVIDER",
    "REPLY_PRIMING_TOKENS",
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NAME",
    "TokenCount",
    "Tokenizer",
    "count_messages",
    "count_text",
    "estimate_llm_tokens",
    "llm_token_count",
    "tool_calls_text",
]

logger = logging.getLogger(__name__)

PROVIDER = "provider"
""":attr:`TokenCount.source` of figures the provider reported in the payload."""
ESTIMATE = "estimate"
""":attr:`TokenCount.source` of figures counted locally with tiktoken."""

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


class TokenCount(NamedTuple):
    """Tokens of one LLM call and where the figures come from."""

    prompt: int
    completion: int
    total: int
    source: str
    """:data:`PROVIDER` or :data:`ESTIMATE`."""
    detail: str | None = None
    """The provider's usage convention (``"openai"``, ``"anthropic"``...) or the tiktoken
    encoding of an estimate (``"cl100k_base"``)."""


def estimate_llm_tokens(payload: Mapping[str, Any], tokenizer: Tokenizer) -> tuple[int, int]:
    """``(prompt, completion)`` tokens of an LLM call's payload (start and end merged):
    chat messages with OpenAI's per-message overhead, else the prompt text; the reply's text and
    tool calls."""
    messages = payload.get(EventPayload.MESSAGES)
    if messages is not None:
        prompt = count_messages(tokenizer, messages_of(messages))
    else:
        prompt = count_text(tokenizer, prompt_of(payload))
    reply = assistant_message_of(payload)
    completion = count_text(tokenizer, reply.content) if reply is not None else 0
    if reply is not None and reply.tool_calls:
        completion += count_text(tokenizer, tool_calls_text(reply.tool_calls))
    return prompt, completion


_CACHE_SIZE = 4096
_cache: OrderedDict[str, TokenCount | None] = OrderedDict()
_cache_lock = threading.Lock()
_warned: set[str] = set()


def _new_lock_after_fork() -> None:
    # Another thread may have held the lock at the fork; in the child it would stay held.
    global _cache_lock
    _cache_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def llm_token_count(end: Event) -> TokenCount | None:
    """The token count of an ended LLM call: the provider's usage if the payload reports it,
    else a tiktoken estimate with the model's encoding (``cl100k_base`` for unknown models).
    ``None`` only when no encoding is available offline (logged once per encoding).

    Results are cached by event id for the most recent calls, so every sink that records the call
    gets the same figures for the cost of one tokenization.
    """
    with _cache_lock:
        if end.id in _cache:
            return _cache[end.id]
    count = _count(end.full_payload)
    with _cache_lock:
        _cache[end.id] = count
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return count


def _count(payload: Mapping[str, Any]) -> TokenCount | None:
    usage = usage_of(payload)
    if usage is not None:
        return TokenCount(usage.prompt, usage.completion, usage.total, PROVIDER, usage.source)
    from .encodings import EncodingError, encoding_name_for_model, load_encoding

    name = encoding_name_for_model(model_of(payload))
    try:
        encoding = load_encoding(name)
    except EncodingError as error:
        if name not in _warned:
            _warned.add(name)
            logger.warning("token estimate unavailable: %s", error)
        return None
    prompt, completion = estimate_llm_tokens(payload, encoding.encode_ordinary)
    return TokenCount(prompt, completion, prompt + completion, ESTIMATE, name)
