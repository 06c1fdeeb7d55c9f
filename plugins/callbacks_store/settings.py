"""The ``[store]`` settings section (``CALLBACKS_STORE__<KEY>`` in the environment)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["StoreSettings"]


class StoreSettings(BaseModel):
    """Where traces are stored and how many are kept. Nothing is written until ``path`` is
    set."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    """SQLite database file (created with its folder); ``None`` or ``""``: the store is off."""
    max_traces: int | None = Field(default=None, ge=1)
    """Keep at most this many traces (the newest); ``None``: no limit."""
    max_age_days: float | None = Field(default=None, gt=0)
    """Delete traces that started more than this many days ago; ``None``: keep them."""
    batch_size: int = Field(default=500, ge=1)
    """Rows buffered on the worker before a commit (a trace's end also commits)."""
    busy_timeout_s: float = Field(default=1.0, ge=0)
    """How long a write waits for another connection's lock before it counts an error."""
    max_pending_rows: int = Field(default=50_000, ge=1)
    """Rows kept for retry while the database cannot be written; older ones are lost, counted."""

    @field_validator("path", mode="before")
    @classmethod
    def _empty_path_means_off(cls, value: object) -> object:
        return None if value == "" else value
