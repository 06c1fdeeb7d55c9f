"""The ``wandb`` plugin: hooks turning events into W&B traces, metrics and an LLM-calls table."""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from callbacks import Event, EventType, hookimpl

from .collector import EventPair, TraceCollector
from .llm_calls import COLUMNS, llm_call
from .run import RunHandle, WandbInitError
from .settings import WandbSettings
from .spans import build_tree

if TYPE_CHECKING:
    from callbacks import Trace

__all__ = ["WandbPlugin"]

logger = logging.getLogger(__name__)

MAX_TABLE_ROWS = 10_000
"""The ``llm_calls`` table keeps the most recent calls, up to this many."""


class WandbPlugin:
    """Logs each trace as a W&B trace tree, each LLM call as ``llm/*`` metrics, and a table of
    LLM calls. Every W&B call runs on this plugin's background worker."""

    callbacks_delivery = "process"
    callbacks_name = "wandb"

    def __init__(self) -> None:
        self.settings = WandbSettings()
        self.run = RunHandle(self.settings)
        self.traces_logged = 0
        """Trace trees logged so far."""
        self.discarded = 0
        """Events and traces not logged because W&B failed to start or was already finished."""
        self._collector = TraceCollector()
        self._rows: deque[list[Any]] = deque(maxlen=MAX_TABLE_ROWS)
        self._rows_added = 0
        self._rows_logged = 0

    @hookimpl
    def callbacks_settings(self) -> type[WandbSettings]:
        """Declare the ``[wandb]`` settings section."""
        return WandbSettings

    @hookimpl
    def callbacks_configure(self, settings: WandbSettings | None) -> None:
        """Keep the validated settings; the run itself starts with the first event."""
        self.settings = settings if settings is not None else WandbSettings()
        self.run = RunHandle(self.settings)

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        """Hold the start until its trace ends."""
        if self._ready():
            self._collector.add(event)

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        """Hold the end; for an LLM call, log its metrics and keep its table row."""
        if not self._ready():
            return
        pair = self._collector.add(event)
        if event.type == EventType.LLM:
            call = llm_call(pair.start if pair else None, event, self.settings.log_payloads)
            self._rows.append(call.row())
            self._rows_added += 1
            metrics = call.metrics()
            if metrics:
                self.run.log(metrics)

    @hookimpl
    def on_trace_end(self, trace: Trace) -> None:
        """Log the trace's events as one W&B trace tree, with the trace's totals."""
        pairs = self._collector.pop(trace.id)
        if not pairs:
            return
        if not self._ready():
            return
        from wandb.sdk.data_types.trace_tree import WBTraceTree

        root = build_tree(trace, pairs, self.settings.log_payloads)
        data: dict[str, Any] = {"trace": WBTraceTree(root), **self._trace_metrics(trace, pairs)}
        self.run.log(data)
        self.traces_logged += 1

    @hookimpl
    def callbacks_flush(self, timeout: float) -> None:
        """Log the LLM-calls table if calls were added since it was last logged."""
        self._log_table()

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        """Log the table and finish the run: without ``finish()`` W&B loses the data."""
        try:
            self._log_table()
            if len(self._collector):
                logger.warning(
                    "callbacks-wandb: %d trace(s) had not ended at shutdown and were not logged",
                    len(self._collector),
                )
            if self.discarded:
                logger.warning(
                    "callbacks-wandb: %d event(s) were not logged to W&B", self.discarded
                )
        finally:
            self.run.finish()

    def _ready(self) -> bool:
        # Starts the run on first use. Raises once if wandb.init fails (the host logs and counts
        # it); afterwards events are discarded and counted, since every retry would fail alike.
        if not self.run.usable:
            self.discarded += 1
            return False
        if not self.run.started:
            try:
                self.run.get()
            except WandbInitError:
                self.discarded += 1
                raise
        return True

    def _log_table(self) -> None:
        if self._rows_added == self._rows_logged or not (self.run.started and self.run.usable):
            return
        import wandb

        self.run.log(
            {"llm_calls": wandb.Table(columns=list(COLUMNS), data=[list(r) for r in self._rows])}
        )
        self._rows_logged = self._rows_added

    def _trace_metrics(self, trace: Trace, pairs: dict[str, EventPair]) -> dict[str, float | int]:
        mode = self.settings.log_payloads
        calls = [
            llm_call(p.start, p.end, mode)
            for p in pairs.values()
            if p.end is not None and p.end.type == EventType.LLM
        ]
        tokens = [c.total_tokens for c in calls if c.total_tokens is not None]
        metrics: dict[str, float | int] = {
            "trace/events": len(pairs),
            "trace/llm_calls": len(calls),
            "trace/errors": sum(
                1 for p in pairs.values() if p.end is None or p.end.exception is not None
            ),
        }
        if trace.duration_ns is not None:
            metrics["trace/duration_ms"] = trace.duration_ns / 1e6
        if tokens:
            metrics["trace/total_tokens"] = sum(tokens)
        return metrics
