"""A span processor that exports in batches on its own thread and never drops silently.

OpenTelemetry's ``BatchSpanProcessor`` drops spans when its queue is full, logs that once, and
still reports a successful flush. Here a full queue makes the producer (the plugin's worker)
wait: the back-pressure reaches the host's bounded queue, whose drops the host counts. A span is
dropped only if the queue stays full for ``block_timeout`` seconds, and then it is counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["BlockingBatchProcessor"]

logger = logging.getLogger(__name__)


class BlockingBatchProcessor(SpanProcessor):
    """Queues ended spans (at most ``max_queue_size``) and exports them in batches of up to
    ``max_batch_size`` every ``schedule_delay`` seconds, or sooner when a batch is full."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 2048,
        max_batch_size: int = 512,
        schedule_delay: float = 5.0,
        block_timeout: float = 10.0,
    ) -> None:
        self.exporter = exporter
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self.schedule_delay = schedule_delay
        self.block_timeout = block_timeout
        self.dropped = 0
        """Spans dropped because the queue stayed full for ``block_timeout`` (or after shutdown)."""
        self._queue: deque[ReadableSpan] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._flush_requested = 0
        self._shutdown = False
        self._thread = threading.Thread(
            target=self._run, name="callbacks-openinference-export", daemon=True
        )
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the span, waiting while the queue is full (at most ``block_timeout``)."""
        if not span.context.trace_flags.sampled:
            return
        with self._cond:
            if len(self._queue) >= self.max_queue_size:
                deadline = time.monotonic() + self.block_timeout
                self._cond.notify_all()
                while len(self._queue) >= self.max_queue_size and not self._shutdown:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            if self._shutdown or len(self._queue) >= self.max_queue_size:
                if not self.dropped:
                    logger.warning(
                        "OpenInference export queue full for %.1f s; dropping spans (counted)",
                        self.block_timeout,
                    )
                self.dropped += 1
                return
            self._queue.append(span)
            if len(self._queue) >= self.max_batch_size:
                self._cond.notify_all()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued; False if it did not finish within the timeout."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._cond:
            self._flush_requested += 1
            self._cond.notify_all()
            try:
                while self._queue or self._in_flight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(remaining)
            finally:
                self._flush_requested -= 1
        return True

    def shutdown(self) -> None:
        """Export what is queued, then stop the export thread and shut the exporter down."""
        self.force_flush()
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
        self._thread.join()
        self.exporter.shutdown()

    @property
    def queued(self) -> int:
        """Spans waiting for export."""
        return len(self._queue)

    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.schedule_delay
                while (
                    not self._shutdown
                    and not (self._flush_requested and self._queue)
                    and len(self._queue) < self.max_batch_size
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._shutdown and not self._queue:
                    return
                batch = [
                    self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))
                ]
                self._in_flight = len(batch)
                self._cond.notify_all()  # producers waiting for room
            try:
                if batch:
                    self.exporter.export(batch)
            except Exception:
                logger.exception("OpenInference span export raised")
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
