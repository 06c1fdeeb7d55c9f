"""callbacks-tokens: token counting for LLM and embedding calls, with offline tiktoken."""

from callbacks.encodings import (
    EncodingError,
    EncodingIntegrityError,
    EncodingUnavailableError,
    encoding_name_for_model,
    load_encoding,
)
from callbacks.tokencount import Tokenizer, count_messages, count_text

from .plugin import TokenCountingPlugin
from .records import EmbeddingTokenCount, LLMTokenCount, TokenTotals
from .settings import TokenSettings

__all__ = [
    "EmbeddingTokenCount",
    "EncodingError",
    "EncodingIntegrityError",
    "EncodingUnavailableError",
    "LLMTokenCount",
    "TokenCountingPlugin",
    "TokenSettings",
    "TokenTotals",
    "Tokenizer",
    "count_messages",
    "count_text",
    "encoding_name_for_model",
    "load_encoding",
]
