"""Deliver events to one plugin: inline on the caller's thread, or through a bounded queue to the
plugin's own worker thread. Every handler call is isolated: its exception is logged (rate-limited)
and counted, never passed to the application."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from .events import Event

__all__ = [
    "Calls",
    "DeliveryMode",
    "HandlerError",
    "OverflowPolicy",
    "PluginChannel",
    "count_value",
]

logger = logging.getLogger(__name__)

DeliveryMode = Literal["inline", "background", "process"]
OverflowPolicy = Literal["drop_newest", "drop_oldest"]

Calls = tuple[tuple[str, Callable[..., Any]], ...]
"""The (hook name, function) pairs of one plugin for one kind of event, in call order."""

_LOG_EVERY_S = 10.0
_STUCK_AFTER_S = 5.0
_LINGER_S = 0.05
_IDLE_ROUNDS_BEFORE_SLEEP = 20


class HandlerError(RuntimeError):
    """Raised in strict mode (``CALLBACKS_STRICT=1``) when a plugin's hook raised."""

    def __init__(self, plugin: str, hook: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} raised in {hook}: {error!r}")
        self.plugin = plugin
        self.hook = hook
        self.error = error


class _Control:
    """A queue item that runs on the worker, after every item queued before it."""

    __slots__ = ("action", "done")

    def __init__(self, action: Callable[[], Any] | None) -> None:
        self.action = action
        self.done = threading.Event()


_STOP = object()
_main_thread_id = threading.main_thread().ident


def _is_main_thread() -> bool:
    return threading.get_ident() == _main_thread_id


_channels: weakref.WeakSet[PluginChannel] = weakref.WeakSet()


def count_value(counter: itertools.count[int]) -> int:
    """The next value of ``counter`` (how many times it was advanced), without advancing it."""
    # itertools.count increments atomically under the GIL; its repr, "count(N)", reads it without
    # consuming (pickling support, __reduce__, is gone in Python 3.14).
    return int(repr(counter)[6:-1])


class PluginChannel:
    """The delivery path to one registered plugin, with its counters."""

    def __init__(
        self,
        name: str,
        plugin: object,
        mode: DeliveryMode,
        *,
        queue_size: int = 16384,
        overflow: OverflowPolicy = "drop_newest",
        strict: bool = False,
    ) -> None:
        self.name = name
        self.plugin = plugin
        self.mode = mode
        self.queue_size = queue_size
        self.overflow = overflow
        self.strict = strict
        self._lock = threading.Lock()
        self._delivered = itertools.count()
        self.errors = 0
        self.dropped = 0
        self.errors_by_hook: dict[str, int] = {}
        self._last_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._pending_strict: HandlerError | None = None
        self._closed = False
        self.unfinished = False
        """Set when this plugin's shutdown did not finish in time (reported as stuck)."""
        self.settings: Any = None
        self.listening = True
        """False when the plugin's ``callbacks_configure`` returned False: it gets no events."""
        self.event_calls: dict[Any, dict[Any, Calls]] = {}
        """``{phase: {event type: calls}}``, set by the registry; read by the worker."""
        if mode == "background":
            self._start_worker()
            _channels.add(self)

    # -- calling hooks -----------------------------------------------------------------------

    def call(self, calls: Calls, item: Any, count: bool = True) -> None:
        """Run ``calls`` with ``item`` here and now, isolating each one: an exception is counted
        and logged (:meth:`record_error`), and the next call still runs.

        This is the only place where the host calls a plugin's hook: inline events, the
        background worker, trace hooks and lifecycle hooks all come through here. ``count``
        adds one to ``delivered`` (events and traces; not lifecycle calls)."""
        for hook, fn in calls:
            try:
                fn(item)
            except BaseException as error:
                # Everything a hook raises is the plugin's (SystemExit, CancelledError,
                # GeneratorExit too), except the user's Ctrl-C: SIGINT raises KeyboardInterrupt
                # on the main thread, wherever it happens to be running.
                if type(error) is KeyboardInterrupt and _is_main_thread():
                    raise
                self.record_error(hook, error)
        if count:
            next(self._delivered)

    def record_error(self, hook: str, error: BaseException) -> None:
        """Count and log (at most every 10 s per hook) an exception raised by this plugin."""
        now = time.monotonic()
        with self._lock:
            self.errors += 1
            self.errors_by_hook[hook] = self.errors_by_hook.get(hook, 0) + 1
            last = self._last_log.get(hook)
            should_log = last is None or now - last >= _LOG_EVERY_S
            if should_log:
                self._last_log[hook] = now
                suppressed = self._suppressed.pop(hook, 0)
            else:
                self._suppressed[hook] = self._suppressed.get(hook, 0) + 1
        if should_log:
            more = f" ({suppressed} similar errors since the last report)" if suppressed else ""
            logger.error(
                "callbacks plugin %r raised in %s: %r%s",
                self.name,
                hook,
                error,
                more,
                exc_info=(type(error), error, error.__traceback__),
            )
        if self.strict:
            if not self.is_worker_thread():
                raise error
            self._pending_strict = HandlerError(self.name, hook, error)

    def raise_pending_strict_error(self) -> None:
        """In strict mode, raise (once) a :class:`HandlerError` for an error that a background hook
        raised on the worker."""
        error, self._pending_strict = self._pending_strict, None
        if error is not None:
            raise error

    # -- background queue --------------------------------------------------------------------

    def _start_worker(self) -> None:
        self._queue: deque[Any] = deque()
        self._wakeup = threading.Event()
        self._sleeping = False
        # Waking the worker early keeps queued events young, so they die before the garbage
        # collector promotes them (full collections over a large heap are what hurt).
        self._signal_at = max(1, min(128, self.queue_size // 8))
        self._busy_since = 0.0
        self._busy_hook = ""
        self._stopped = threading.Event()
        self._pid = os.getpid()
        self._thread = threading.Thread(
            target=self._run, name=f"callbacks-{self.name}", daemon=True
        )
        self._thread.start()

    def enqueue(self, item: Any) -> None:
        """Queue an event, or a ``(calls, trace)`` pair, for the worker; for an event the worker
        calls this plugin's hooks for its type and phase. Never blocks; drops (counted) when
        the queue is full."""
        queue = self._queue
        depth = len(queue)
        if depth >= self.queue_size:
            if self.overflow == "drop_newest" or self._closed:
                self._count_drop()
                return
            try:
                oldest = queue.popleft()
            except IndexError:
                pass
            else:
                if type(oldest) is not Event and type(oldest) is not tuple:
                    # A flush or stop marker is never dropped: it goes back to the head, and
                    # the newest event gives way instead.
                    queue.appendleft(oldest)
                    self._count_drop()
                    return
                self._count_drop()
        queue.append(item)
        if (depth >= self._signal_at or self._sleeping) and not self._wakeup.is_set():
            self._sleeping = False
            self._wakeup.set()

    def _count_drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            try:
                if self._serve():
                    return
            except BaseException as error:  # the worker never dies: count it, keep serving
                self._busy_since = 0.0
                try:
                    self.record_error("worker", error)
                except BaseException:  # pragma: no cover - strict mode or a broken logger
                    pass

    def _serve(self) -> bool:
        """Serve the queue until the stop marker (True); :meth:`_run` restarts it if anything
        escapes."""
        queue = self._queue
        wakeup = self._wakeup
        idle_rounds = 0
        while True:
            try:
                item = queue.popleft()
            except IndexError:
                idle_rounds += 1
                self._sleeping = idle_rounds >= _IDLE_ROUNDS_BEFORE_SLEEP
                if queue:  # an item arrived before the producer could see _sleeping
                    continue
                wakeup.wait(None if self._sleeping else _LINGER_S)
                wakeup.clear()
                continue
            idle_rounds = 0
            if type(item) is Event:
                calls = self.event_calls[item[2]].get(item[1])
                if calls:
                    self._busy_since = time.monotonic()
                    self.call(calls, item)
                    self._busy_since = 0.0
                continue
            if item is _STOP:
                self._stopped.set()
                return True
            if isinstance(item, _Control):
                try:
                    if item.action is not None:
                        self._busy_since = time.monotonic()
                        item.action()
                finally:
                    self._busy_since = 0.0
                    item.done.set()
                continue
            calls, arg = item
            self._busy_since = time.monotonic()
            self.call(calls, arg)
            self._busy_since = 0.0

    def is_worker_thread(self) -> bool:
        """True when called from this plugin's own worker thread."""
        return threading.current_thread() is getattr(self, "_thread", None)

    def post(self, action: Callable[[], Any] | None) -> threading.Event | None:
        """Queue ``action`` to run on this plugin's worker after everything queued so far, and
        return at once: the returned event is set once it has run (``None`` if the worker is
        gone). An inline plugin has no worker: a short-lived daemon thread runs ``action``, so a
        hung hook holds nobody past their timeout."""
        if self.mode == "inline":
            done = threading.Event()

            def run() -> None:
                try:
                    if action is not None:
                        action()
                finally:
                    done.set()

            name = f"callbacks-{self.name}-lifecycle"
            threading.Thread(target=run, name=name, daemon=True).start()
            return done
        if not self._thread.is_alive():
            return None
        control = _Control(action)
        self._queue.append(control)
        self._sleeping = False
        self._wakeup.set()
        return control.done

    def run_on_worker(self, action: Callable[[], Any] | None, timeout: float) -> bool:
        """Run ``action`` on this plugin's thread after everything queued so far; wait at most
        ``timeout`` seconds. Inline plugins run it here. Returns False on time-out."""
        if self.mode == "inline":
            if action is not None:
                action()
            return True
        done = self.post(action)
        return done is not None and done.wait(timeout)

    def request_stop(self) -> None:
        """Refuse new items, and stop the worker once the queue has drained (returns at once)."""
        self._closed = True
        if self.mode == "inline":
            return
        self._queue.append(_STOP)
        self._sleeping = False
        self._wakeup.set()

    def wait_stopped(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the worker to stop; False if it did not."""
        if self.mode == "inline":
            return True
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Stop the worker after the queue drains; False if it did not stop in ``timeout``."""
        self.request_stop()
        return self.wait_stopped(timeout)

    # -- state ---------------------------------------------------------------------------------

    @property
    def delivered(self) -> int:
        """Events (and traces) handed to this plugin's hooks."""
        return count_value(self._delivered)

    @property
    def queue_depth(self) -> int:
        """Items waiting for the worker."""
        return len(self._queue) if self.mode == "background" else 0

    @property
    def stuck(self) -> bool:
        """True when one hook call has been running for more than 5 seconds, or the plugin
        did not finish its shutdown in time."""
        if self.unfinished:
            return True
        if self.mode != "background":
            return False
        busy = self._busy_since
        if busy and time.monotonic() - busy > _STUCK_AFTER_S:
            return True
        return self._closed and self._thread.is_alive() and not self._stopped.is_set()

    def stats(self) -> dict[str, Any]:
        """Counters for this plugin, plus whatever its own ``callbacks_stats()`` reports under
        ``"plugin"`` (for example an exporter's failed batches)."""
        own = getattr(self.plugin, "callbacks_stats", None)
        extra: dict[str, Any] = {}
        if callable(own):
            try:
                extra = {"plugin": dict(own())}
            except BaseException as error:
                if type(error) is KeyboardInterrupt and _is_main_thread():
                    raise
                extra = {"plugin": {"error": repr(error)}}
        return {
            **extra,
            "mode": self.mode,
            "listening": self.listening,
            "delivered": self.delivered,
            "errors": self.errors,
            "errors_by_hook": dict(self.errors_by_hook),
            "dropped": self.dropped,
            "queue_depth": self.queue_depth,
            "stuck": self.stuck,
        }

    def _reinit_after_fork(self) -> None:
        # Items queued before the fork belong to the parent, which delivers them.
        self._lock = threading.Lock()
        self._closed = False
        if self.mode == "background":
            self._start_worker()


def _after_fork_in_child() -> None:
    for channel in list(_channels):
        channel._reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
