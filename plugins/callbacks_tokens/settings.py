"""The ``[tokens]`` settings section (``CALLBACKS_TOKENS__<KEY>`` in the environment)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from callbacks.encodings import DEFAULT_ENCODING

__all__ = ["TokenSettings"]


class TokenSettings(BaseModel):
    """How tokens are counted when the provider does not report usage, and the optional budget."""

    model_config = ConfigDict(extra="forbid")

    encoding: str | None = None
    """Use this tiktoken encoding for every model; ``None`` picks one per model."""
    fallback_encoding: str = DEFAULT_ENCODING
    """Encoding for models tiktoken does not know (and for events that name no model)."""
    encoding_dirs: list[str] = Field(default_factory=list)
    """Extra directories holding vocabulary files (``cl100k_base.tiktoken[.gz]`` or tiktoken
    cache files), searched before the installed packages."""
    budget: int | None = Field(default=None, ge=0)
    """LLM tokens (prompt + completion) allowed until ``reset_counts``; exceeding it logs a
    warning and counts an overrun, and never raises."""
    max_records: int = Field(default=10_000, ge=0)
    """Per-call records kept for inspection (the oldest go first); totals are always exact."""
    max_traces: int = Field(default=10_000, ge=1)
    """Traces whose totals are kept for ``totals_by_trace`` (the oldest go first)."""
