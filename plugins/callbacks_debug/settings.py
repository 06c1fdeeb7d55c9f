"""The ``[debug]`` settings section (``CALLBACKS_DEBUG__<KEY>`` in the environment)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DebugSettings"]


class DebugSettings(BaseModel):
    """What the debug plugin prints and how much it keeps."""

    model_config = ConfigDict(extra="forbid")

    print_trace: bool = False
    """Print each trace's tree of events to stdout when the trace ends. Off by default: the
    plugin records (``get_events``, ``get_trace``) and prints nothing unless asked."""
    rich: bool | None = None
    """Print with rich (colours, tree guides); ``None``: only when the stream is a terminal."""
    max_traces: int = Field(default=100, ge=1)
    """Traces kept, with their events; the oldest are forgotten first."""
    max_events_per_trace: int = Field(default=10_000, ge=1)
    """Events (each a start and an end) kept per trace; later ones are counted in
    ``dropped_events`` instead."""
    summary_chars: int = Field(default=60, ge=8)
    """Length of the payload summaries in the printed tree."""
