"""The ``aim`` plugin: hooks that feed finished events and traces into one Aim run."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from callbacks import Event, hookimpl

from .recording import AimRecorder
from .records import Steps, event_records, trace_records
from .settings import AimSettings

if TYPE_CHECKING:
    from callbacks import Trace

__all__ = ["AimPlugin"]

logger = logging.getLogger(__name__)

"""Start events kept while waiting for their end; the oldest are forgotten beyond this."""


class AimPlugin:
    """Records LLM prompts and responses, chunks, retrievals, latencies and token counts in an
    Aim run. All Aim calls happen on this plugin's background worker."""

    callbacks_name = "aim"
    callbacks_delivery = "process"

    def __init__(self) -> None:
        self._settings = AimSettings()
        self._recorder: AimRecorder | None = None
        self._steps = Steps()

    @property
    def recorder(self) -> AimRecorder:
        """The recorder that owns the Aim run (made from the defaults if never configured)."""
        if self._recorder is None:
            self._recorder = AimRecorder(self._settings)
        return self._recorder

    @hookimpl
    def callbacks_settings(self) -> type[AimSettings]:
        """The ``[aim]`` section's model."""
        return AimSettings

    @hookimpl
    def callbacks_configure(self, settings: AimSettings | None, manager: Any) -> None:
        """Take the validated settings; the run itself is opened on the first event."""
        self._settings = settings if settings is not None else AimSettings()
        self._recorder = AimRecorder(self._settings)

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        """Track the event's texts and metrics."""
        self.recorder.record(event_records(event, self._steps))

    @hookimpl
    def on_trace_end(self, trace: Trace) -> None:
        """Track the trace's latency."""
        self.recorder.record(trace_records(trace.name, trace.duration_ns, self._steps))

    @hookimpl
    def callbacks_flush(self, timeout: float) -> None:
        """Wait for a remote Aim repository to receive what was tracked."""
        if self._recorder is not None:
            self._recorder.flush()

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        """Close the Aim run."""
        if self._recorder is not None:
            self._recorder.close()
