"""The ``tokens`` plugin: counts LLM and embedding tokens per call, model and trace."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from callbacks import Event, EventPayload, hookimpl
from callbacks.encodings import (
    EncodingUnavailableError,
    encoding_name_for_model,
    load_encoding,
    reset_lock_after_fork,
)
from callbacks.payloads import embedding_texts_of, model_of, usage_of
from callbacks.tokencount import Tokenizer, count_text, estimate_llm_tokens

from .records import EmbeddingTokenCount, LLMTokenCount, TokenTotals
from .settings import TokenSettings

if TYPE_CHECKING:
    from callbacks import CallbackManager

__all__ = ["TokenCountingPlugin"]

logger = logging.getLogger(__name__)


class TokenCountingPlugin:
    """Counts tokens of every LLM and embedding call, like LlamaIndex's TokenCountingHandler,
    but exact under concurrency: each end event carries its own start (``event.start``).

    Provider-reported usage in the payload wins; otherwise the prompt (or the chat messages, with
    OpenAI's per-message overhead) and the completion are tokenized with the model's tiktoken
    encoding, or with ``tokenizer`` when given. Counting runs on the plugin's worker; every
    reader flushes that worker first, so the figures it returns are exact.
    """

    callbacks_name = "tokens"
    callbacks_delivery = "background"

    def __init__(self, tokenizer: Tokenizer | None = None) -> None:
        self._tokenizer = tokenizer
        self._settings = TokenSettings()
        self._manager: CallbackManager | None = None
        self._lock = threading.Lock()
        self._warned_encodings: set[str] = set()
        self._reset()

    def _reset(self) -> None:
        with self._lock:
            self._llm = deque[LLMTokenCount](maxlen=self._settings.max_records)
            self._embedding = deque[EmbeddingTokenCount](maxlen=self._settings.max_records)
            self._totals = TokenTotals()
            self._by_model: dict[str, TokenTotals] = {}
            self._by_source: dict[str, TokenTotals] = {}
            self._by_trace: OrderedDict[str, TokenTotals] = OrderedDict()
            self._overruns = 0
            self._uncounted = 0

    # -- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def callbacks_settings(self) -> type[TokenSettings]:
        """The ``[tokens]`` section's model."""
        return TokenSettings

    @hookimpl
    def callbacks_configure(self, settings: TokenSettings | None, manager: CallbackManager) -> None:
        """Keep the settings, and the manager used to flush before reading."""
        if settings is not None:
            self._settings = settings
            self._reset()
        self._manager = manager

    @hookimpl
    def callbacks_after_fork_in_child(self) -> None:
        """A lock that another thread held at the fork stays held in the child: start afresh."""
        self._lock = threading.Lock()
        reset_lock_after_fork()

    @hookimpl
    def on_llm_end(self, event: Event) -> None:
        """Count the call from the start's prompt and the end's completion (or reported usage)."""
        record = self._count_llm(event)
        if record is None:
            with self._lock:
                self._uncounted += 1
            return
        with self._lock:
            self._llm.append(record)
            for totals in self._totals_for(record.model, record.source, record.trace_id):
                totals.add_llm(record)
            budget = self._settings.budget
            used = self._totals.total
            over = budget is not None and used > budget
            if over:
                self._overruns += 1
            first = over and self._overruns == 1
        if first:
            logger.warning(
                "token budget exceeded: %d LLM tokens counted, budget %s (tokens setting "
                "'budget'); further overruns are counted in budget_overruns",
                used,
                budget,
            )

    @hookimpl
    def on_embedding_end(self, event: Event) -> None:
        """Count the tokens of the embedded texts."""
        record = self._count_embedding(event)
        if record is None:
            return
        with self._lock:
            self._embedding.append(record)
            for totals in self._totals_for(record.model, record.source, record.trace_id):
                totals.add_embedding(record)

    # -- counting ------------------------------------------------------------------------------

    def _tokenizer_for(self, model: str | None) -> tuple[Tokenizer, str, str | None]:
        if self._tokenizer is not None:
            return self._tokenizer, "tokenizer", None
        settings = self._settings
        name = settings.encoding or encoding_name_for_model(model, settings.fallback_encoding)
        try:
            encoding = load_encoding(name, settings.encoding_dirs)
        except EncodingUnavailableError:
            if name == settings.fallback_encoding or settings.encoding:
                raise
            if name not in self._warned_encodings:
                self._warned_encodings.add(name)
                logger.warning(
                    "tiktoken encoding %r (model %r) is not available offline; counting with "
                    "fallback_encoding %r instead",
                    name,
                    model,
                    settings.fallback_encoding,
                )
            name = settings.fallback_encoding
            encoding = load_encoding(name, settings.encoding_dirs)
        return encoding.encode_ordinary, "tiktoken", name

    def _count_llm(self, end: Event) -> LLMTokenCount | None:
        payload = end.full_payload
        model = model_of(payload)
        usage = usage_of(payload)
        if usage is not None:
            return LLMTokenCount(
                usage.prompt,
                usage.completion,
                usage.total,
                model,
                end.trace_id,
                end.id,
                f"usage:{usage.source}",
            )
        if end.failed:
            return None
        tokenizer, source, encoding = self._tokenizer_for(model)
        prompt, completion = estimate_llm_tokens(payload, tokenizer)
        return LLMTokenCount(
            prompt, completion, prompt + completion, model, end.trace_id, end.id, source, encoding
        )

    def _count_embedding(self, end: Event) -> EmbeddingTokenCount | None:
        payload = end.full_payload
        model = payload.get(EventPayload.EMBEDDING_MODEL_NAME) or model_of(payload)
        model = str(model) if model else None
        usage = usage_of(payload)
        if usage is not None:
            return EmbeddingTokenCount(
                usage.total, model, end.trace_id, end.id, f"usage:{usage.source}"
            )
        if end.failed:
            return None
        tokenizer, source, encoding = self._tokenizer_for(model)
        tokens = sum(count_text(tokenizer, text) for text in embedding_texts_of(payload))
        return EmbeddingTokenCount(tokens, model, end.trace_id, end.id, source, encoding)

    def _totals_for(self, model: str | None, source: str, trace_id: str) -> list[TokenTotals]:
        by_trace = self._by_trace
        trace_totals = by_trace.get(trace_id)
        if trace_totals is None:
            trace_totals = by_trace[trace_id] = TokenTotals()
            if len(by_trace) > self._settings.max_traces:
                by_trace.popitem(last=False)
        return [
            self._totals,
            self._by_model.setdefault(model or "unknown", TokenTotals()),
            self._by_source.setdefault(source, TokenTotals()),
            trace_totals,
        ]

    # -- reading -------------------------------------------------------------------------------

    def _sync(self) -> None:
        """Wait until every event emitted so far has been counted."""
        if self._manager is not None:
            self._manager.flush(plugin=self)

    @property
    def llm_token_counts(self) -> list[LLMTokenCount]:
        """One record per counted LLM call (the last ``max_records``), oldest first."""
        self._sync()
        with self._lock:
            return list(self._llm)

    @property
    def embedding_token_counts(self) -> list[EmbeddingTokenCount]:
        """One record per counted embedding call (the last ``max_records``), oldest first."""
        self._sync()
        with self._lock:
            return list(self._embedding)

    @property
    def prompt_llm_token_count(self) -> int:
        """Prompt tokens of every LLM call since the last reset."""
        return self.totals().prompt

    @property
    def completion_llm_token_count(self) -> int:
        """Completion tokens of every LLM call since the last reset."""
        return self.totals().completion

    @property
    def total_llm_token_count(self) -> int:
        """Prompt plus completion tokens of every LLM call since the last reset."""
        return self.totals().total

    @property
    def total_embedding_token_count(self) -> int:
        """Tokens embedded since the last reset."""
        return self.totals().embedding

    @property
    def budget_overruns(self) -> int:
        """LLM calls counted while the total was over ``budget``."""
        self._sync()
        return self._overruns

    @property
    def uncounted_llm_calls(self) -> int:
        """Failed LLM calls that reported no usage, so nothing was counted for them."""
        self._sync()
        return self._uncounted

    def totals(self) -> TokenTotals:
        """A copy of the running totals since the last reset."""
        self._sync()
        with self._lock:
            return _copy(self._totals)

    def totals_by_model(self) -> dict[str, TokenTotals]:
        """Totals per model name (``"unknown"`` for calls that named none)."""
        self._sync()
        with self._lock:
            return {k: _copy(v) for k, v in self._by_model.items()}

    def totals_by_source(self) -> dict[str, TokenTotals]:
        """Totals per source of the figures (``"usage:openai"``, ``"tiktoken"``...)."""
        self._sync()
        with self._lock:
            return {k: _copy(v) for k, v in self._by_source.items()}

    def totals_by_trace(self) -> dict[str, TokenTotals]:
        """Totals per trace id, for the last ``max_traces`` traces that used tokens."""
        self._sync()
        with self._lock:
            return {k: _copy(v) for k, v in self._by_trace.items()}

    def reset_counts(self) -> None:
        """Forget every record and total (and budget overruns), after counting what is queued."""
        self._sync()
        self._reset()


def _copy(totals: TokenTotals) -> TokenTotals:
    return TokenTotals(**vars(totals))
