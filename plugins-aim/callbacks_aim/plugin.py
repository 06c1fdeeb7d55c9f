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


class AimPlugin:
    """Records LLM prompts and responses, chunks, retrievals, errors, latencies and token
    counts in an Aim run. Aim is imported in the background as soon as the plugin is configured
    and the run opened on a setup thread at the first event; no Aim call ever happens on the
    application's thread."""

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
        """Take the validated settings and start importing Aim (it takes seconds, which must not
        land in a short program's shutdown). The run is opened at the first event, off the
        worker's thread, so a process that records nothing leaves no run behind."""
        self._settings = settings if settings is not None else AimSettings()
        self._recorder = AimRecorder(self._settings)
        self._recorder.prepare()

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        """Track the event's texts and metrics."""
        self.recorder.record(event_records(event, self._steps))

    @hookimpl
    def on_trace_end(self, trace: Trace) -> None:
        """Track the trace's latency."""
        self.recorder.record(trace_records(trace.name, trace.duration_ns, self._steps))

    @hookimpl
    def callbacks_flush(self, timeout: float) -> bool:
        """Wait (within ``timeout``) until what was recorded is in the repository."""
        return self._recorder.flush(timeout) if self._recorder is not None else True

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        """Write what is held and close the run, waiting at most ``timeout`` for Aim's setup."""
        if self._recorder is not None:
            # Return a little before the host's bound, so it is this plugin that says what is
            # still running (and the host does not call it stuck).
            self._recorder.close(max(0.0, timeout - 0.25))
            self._recorder.flush(0)  # raises once if the run could not be opened
            if self._recorder.dropped:
                logger.warning(
                    "callbacks-aim: %d record(s) could not be written to %s",
                    self._recorder.dropped,
                    self._recorder.repo,
                )

    def callbacks_stats(self) -> dict[str, Any]:
        """Where the run is and what was written, held or lost."""
        recorder = self._recorder
        if recorder is None:
            return {}
        return {
            "repo": recorder.repo,
            "run_hash": recorder.run_hash,
            "tracked": recorder.tracked,
            "pending": recorder.pending,
            "dropped": recorder.dropped,
        }
