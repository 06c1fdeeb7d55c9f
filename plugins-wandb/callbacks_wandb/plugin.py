"""The ``wandb`` plugin: traces as W&B trace trees and metrics, plus an LLM-calls table."""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from callbacks import Event, EventType, hookimpl
from callbacks.collect import CollectedTrace, TraceCollector

from .llm_calls import COLUMNS, llm_call, plain_cell
from .run import RunHandle
from .settings import WandbSettings
from .spans import build_tree
from .trace_tree import logged_tree

if TYPE_CHECKING:
    from callbacks import Trace

__all__ = ["WandbPlugin"]

logger = logging.getLogger(__name__)

MAX_TABLE_ROWS = 10_000
"""The ``llm_calls`` table keeps the most recent calls, up to this many."""
TRACE_KEY = "trace"
"""History key of the trace trees."""
MAX_PENDING_TRACES = 10_000
"""Ended traces held while W&B is starting; beyond this the oldest are discarded (counted)."""


class WandbPlugin:
    """Logs each trace as one W&B history row (its trace tree and ``trace/*`` metrics) and keeps
    a table of LLM calls, logged at flush and shutdown. Every W&B call runs on this plugin's
    background worker."""

    callbacks_delivery = "process"
    callbacks_name = "wandb"

    def __init__(self) -> None:
        self.settings = WandbSettings()
        self.run = RunHandle(self.settings, on_ready=self._on_ready)
        self.traces_logged = 0
        """Trace trees logged so far."""
        self.discarded = 0
        """Events not logged because W&B failed to start or was already finished."""
        self.cells_converted = 0
        """Table cells whose value W&B could not take as is, logged as plain values or text."""
        self.table_errors = 0
        """Times the ``llm_calls`` table could not be built even from converted cells."""
        self._collector = TraceCollector(name="callbacks-wandb")
        self._lock = threading.RLock()
        self._pending: deque[tuple[Trace, CollectedTrace]] = deque()
        self._closing = False
        self._live = False
        self._settled = threading.Event()
        self._reported_init_error = False
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
        self.run = RunHandle(self.settings, on_ready=self._on_ready)
        self._settled = threading.Event()

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        """Hold the start until its trace ends."""
        self._collector.add(event)
        self._ready()

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        """Hold the end until its trace ends."""
        self._collector.add(event)
        self._ready()

    @hookimpl
    def on_trace_end(self, trace: Trace) -> None:
        """Log the trace as one history row (held until W&B has started)."""
        collected = self._collector.end_trace(trace)
        if not collected.pairs:
            return
        if not self._ready():
            self.discarded += len(collected)
            return
        with self._lock:
            if not self._live:
                if len(self._pending) >= MAX_PENDING_TRACES:
                    _, dropped = self._pending.popleft()
                    self.discarded += len(dropped)
                self._pending.append((trace, collected))
                return
        # Once live, only this (the worker's) thread logs.
        self._log_trace(trace, collected)

    @hookimpl
    def callbacks_flush(self, timeout: float) -> bool:
        """Wait (within ``timeout``) for W&B to start and log what was held, then log the
        LLM-calls table if calls were added since. False if W&B was still starting."""
        settled = self._settled.wait(timeout) if self.run.requested else True
        self._report_init_error()
        with self._lock:
            live = self._live
        if live:
            self._log_table()
        return settled

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        """Log the table and finish the run (without ``finish()`` W&B loses the data). If W&B
        is still starting at the deadline, the setup thread finishes the run when it is ready."""
        # Return a little before the host's bound: this plugin says what is still running.
        settled = self._settled.wait(max(0.0, timeout - 0.25)) if self.run.requested else True
        try:
            self._report_init_error()
        finally:
            with self._lock:
                self._closing = True
                live = self._live
            if live or settled:
                self._close()
            else:
                logger.warning(
                    "callbacks-wandb: W&B is still starting; %d trace(s) will be logged and "
                    "the run finished when it is ready if the program still runs (at exit they "
                    "are lost: call flush with a longer timeout first)",
                    len(self._pending),
                )

    def callbacks_stats(self) -> dict[str, Any]:
        """Where the run went and what was logged, held or lost."""
        return {
            "run_dir": self.run.run_dir,
            "sync_file": self.run.sync_file,
            "requested_dir": self.run.requested_dir,
            "dir_fallbacks": self.run.dir_fallbacks,
            "traces_logged": self.traces_logged,
            "traces_pending": len(self._pending),
            "discarded": self.discarded,
            "cells_converted": self.cells_converted,
            "table_errors": self.table_errors,
            **self._collector.stats(),
        }

    def _ready(self) -> bool:
        # Starts W&B on first use, off this thread. If wandb.init failed, raises once (the host
        # logs and counts it); afterwards events are discarded and counted.
        if self.run.failed is not None or not self.run.usable:
            self._report_init_error()
            return False
        self.run.start()
        return True

    def _report_init_error(self) -> None:
        error = self.run.init_error
        if error is not None and not self._reported_init_error:
            self._reported_init_error = True
            raise error

    def _on_ready(self, run: RunHandle) -> None:
        # On the setup thread, once wandb.init has returned or failed. Logs what was held,
        # batch by batch, without holding the lock while W&B works (the worker keeps holding
        # new traces meanwhile); the run goes live once nothing is held.
        closing = False
        try:
            if not run.started:
                with self._lock:
                    self.discarded += sum(len(collected) for _, collected in self._pending)
                    self._pending.clear()
                return
            # The latest trace tree is not a summary of the run, and copying every tree into a
            # summary record doubled what wandb-core writes.
            run.keep_out_of_summary(f"{TRACE_KEY}.*")
            while True:
                with self._lock:
                    if not self._pending:
                        self._live = not self._closing
                        closing = self._closing
                        break
                    batch = list(self._pending)
                    self._pending.clear()
                for trace, collected in batch:
                    try:
                        self._log_trace(trace, collected)
                    except Exception:
                        self.discarded += len(collected)
                        logger.warning(
                            "callbacks-wandb: a held trace was not logged", exc_info=True
                        )
        finally:
            self._settled.set()
        if closing:
            # Shutdown gave up waiting; finish here (W&B may already be closing at exit).
            try:
                self._close()
            except Exception:
                logger.warning("callbacks-wandb: the run could not be finished", exc_info=True)

    def _close(self) -> None:
        try:
            if self.run.started:
                self._log_table()
            if len(self._collector):
                logger.warning(
                    "callbacks-wandb: %d trace(s) had not ended at shutdown and were not logged",
                    len(self._collector),
                )
            if self.discarded or self._collector.lost_events:
                logger.warning(
                    "callbacks-wandb: %d event(s) were not logged to W&B",
                    self.discarded + self._collector.lost_events,
                )
        finally:
            self.run.finish()

    def _log_trace(self, trace: Trace, collected: CollectedTrace) -> None:
        mode = self.settings.log_payloads
        calls = [llm_call(p, mode) for p in collected.pairs.values() if p.any.type is EventType.LLM]
        for call in calls:
            self._rows.append(self._plain_row(call.row()))
        self._rows_added += len(calls)
        root = build_tree(trace, collected.pairs, mode)
        data: dict[str, Any] = {TRACE_KEY: logged_tree(root), **_trace_metrics(collected, calls)}
        self.run.log(data)
        self.traces_logged += 1

    def _plain_row(self, row: list[Any]) -> list[Any]:
        out = []
        for value in row:
            cell, converted = plain_cell(value)
            self.cells_converted += converted
            out.append(cell)
        return out

    def _log_table(self) -> None:
        if self._rows_added == self._rows_logged or not (self.run.started and self.run.usable):
            return
        import wandb

        rows = [list(r) for r in self._rows]
        try:
            table = wandb.Table(columns=list(COLUMNS), data=rows)
        except Exception:
            # One odd value must not cost the table: fall back to text cells.
            self.table_errors += 1
            logger.warning("callbacks-wandb: llm_calls table made of text cells", exc_info=True)
            rows = [[None if v is None else str(v) for v in r] for r in rows]
            table = wandb.Table(columns=list(COLUMNS), data=rows)
        self.run.log({"llm_calls": table})
        self._rows_logged = self._rows_added


def _trace_metrics(collected: CollectedTrace, calls: list[Any]) -> dict[str, float | int]:
    pairs = collected.pairs
    metrics: dict[str, float | int] = {
        "trace/events": len(pairs),
        "trace/llm_calls": len(calls),
        "trace/errors": sum(1 for p in pairs.values() if p.end is None or p.error is not None),
    }
    trace = collected.trace
    if trace is not None and trace.duration_ns is not None:
        metrics["trace/duration_ms"] = trace.duration_ns / 1e6
    counted = [c for c in calls if c.total_tokens is not None]
    if counted:
        metrics["trace/prompt_tokens"] = sum(c.prompt_tokens for c in counted)
        metrics["trace/completion_tokens"] = sum(c.completion_tokens for c in counted)
        metrics["trace/total_tokens"] = sum(c.total_tokens for c in counted)
        metrics["trace/estimated_tokens"] = sum(
            c.total_tokens for c in counted if c.token_source == "estimate"
        )
    latencies = [c.latency_ms for c in calls if c.latency_ms is not None]
    if latencies:
        metrics["trace/llm_latency_ms"] = sum(latencies)
    return metrics
