"""Process delivery, the application's side: plugins that run in one sidecar process.

A plugin asks for it with ``callbacks_delivery = "process"`` (or the user, with the host key
``delivery = {name = "process"}``). The host then starts one sidecar per manager
(``python -m callbacks._sidecar``, see :mod:`._sidecar`) and registers the plugin there instead of
here. The caller's thread only appends the event to a bounded queue; one background thread (the
link's sender) turns events and traces into wire records (:mod:`callbacks.wire`), pickles them in
batches and writes them to a socket. The sidecar calls the plugin's hooks and acknowledges each
batch, so the app knows what was handled; when it dies, what it had not acknowledged is counted
as lost and a new sidecar is started. A sidecar that cannot start leaves the plugin in-process
(background delivery), with a warning.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._channel import PluginChannel
from ._trace import Trace
from .events import Event, EventPhase
from .wire import VERSION, event_record, event_start_record, trace_record

if TYPE_CHECKING:
    from ._registry import Registry

__all__ = ["ProcessChannel", "SidecarLink", "in_sidecar", "open_process_channel"]

logger = logging.getLogger(__name__)

_in_sidecar = False
"""True in the sidecar process (set by :mod:`._sidecar`): there, ``process`` plugins run inline."""

_START_TIMEOUT_S = 30.0
_REGISTER_TIMEOUT_S = 120.0
_STATS_TIMEOUT_S = 2.0
_LIFECYCLE_TIMEOUT_S = 3600.0
"""What the sidecar gives a plugin's flush or shutdown hook; the app waits as long as its own
caller's timeout says."""
_BATCH = 1024
_LINGER_S = 0.05
_MAX_RESTARTS = 5
_MAX_STARTS_KEPT = 100_000

_links: weakref.WeakSet[SidecarLink] = weakref.WeakSet()
_finishing: list[subprocess.Popen[bytes]] = []
SIDECAR_EXIT_WAIT_S = 60.0


def in_sidecar() -> bool:
    """True inside the sidecar process."""
    return _in_sidecar


def mark_sidecar() -> None:
    """Called by the sidecar before it builds its manager."""
    global _in_sidecar
    _in_sidecar = True


class SidecarUnavailable(RuntimeError):
    """The sidecar could not start, or could not load a plugin."""


def plugin_spec(plugin: object) -> tuple[str, str]:
    """How the sidecar loads ``plugin``: ``("module", name)`` or ``("class", "module:qualname")``
    (an instance is rebuilt from its class with no arguments)."""
    if isinstance(plugin, ModuleType):
        return ("module", plugin.__name__)
    cls = plugin if isinstance(plugin, type) else type(plugin)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise SidecarUnavailable(
            f"{cls.__qualname__} is defined in __main__ or inside a function, so the sidecar "
            f"cannot import it"
        )
    return ("class", f"{cls.__module__}:{cls.__qualname__}")


class _Request:
    """A request to the sidecar, queued behind every item queued before it."""

    __slots__ = ("args", "done", "kind", "result", "token")

    def __init__(self, kind: str, token: int, *args: Any) -> None:
        self.kind = kind
        self.token = token
        self.args = args
        self.done = threading.Event()
        self.result: Any = None


class _Done:
    """Set once the sidecar answered a request truthfully: ``wait`` is False on time-out, and
    when the sidecar died or the request failed."""

    __slots__ = ("request",)

    def __init__(self, request: _Request) -> None:
        self.request = request

    def wait(self, timeout: float | None = None) -> bool:
        return self.request.done.wait(timeout) and bool(self.request.result)


class SidecarLink:
    """The app's end of one sidecar: the queue, the sender and reader threads, and counters."""

    def __init__(
        self, host_config: dict[str, Any], queue_size: int, python: str | None = None
    ) -> None:
        self.host_config = host_config
        self.python = python or sys.executable
        self.queue_size = queue_size
        self.plugins: dict[str, tuple[tuple[str, str], dict[str, Any]]] = {}
        self.dropped = 0
        """Events not sent: the queue was full, or the sidecar could not be restarted."""
        self.lost = 0
        """Events sent to a sidecar that died before confirming it handled them."""
        self.restarts = 0
        self.pid: int | None = None
        self.closed = False
        self._closing = False
        self._base_counts: dict[str, tuple[int, int]] = {}
        self._counts: dict[str, tuple[int, int]] = {}
        self._reset_state()
        _links.add(self)

    def _reset_state(self) -> None:
        self._queue: deque[Any] = deque()
        self._wakeup = threading.Event()
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._waiting: dict[int, _Request] = {}
        self._conn: Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._incarnation = 0
        self._sent = 0
        self._acked = 0
        self._started: dict[str, None] = {}
        self._send_lock = threading.RLock()
        self._gave_up = False
        self._forked = False
        self._sender = threading.Thread(
            target=self._send_loop, name="callbacks-sidecar", daemon=True
        )
        self._sender.start()

    # -- starting and stopping the sidecar ----------------------------------------------------

    def start(self) -> None:
        """Start the sidecar process and wait until it is ready; raise
        :class:`SidecarUnavailable` if it does not start within 30 s."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._conn is not None:
            return
        python = self.python
        mine, theirs = socket.socketpair()
        try:
            try:
                proc = subprocess.Popen(
                    [python, "-m", "callbacks._sidecar", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # the terminal's Ctrl-C goes to the app only
                )
            except OSError as error:
                mine.close()
                raise SidecarUnavailable(f"cannot run {python}: {error}") from error
        finally:
            theirs.close()
        conn = Connection(mine.detach())
        try:
            conn.send(("hello", VERSION, self.host_config, list(sys.path)))
            if not conn.poll(_START_TIMEOUT_S):
                raise SidecarUnavailable(f"no answer within {_START_TIMEOUT_S:.0f}s")
            kind, pid = conn.recv()
            if kind != "ready":
                raise SidecarUnavailable(f"unexpected answer {kind!r}")
        except (OSError, EOFError, SidecarUnavailable, ValueError) as error:
            conn.close()
            _reap(proc, 1.0)
            if isinstance(error, SidecarUnavailable):
                raise
            raise SidecarUnavailable(
                f"it exited before it was ready (exit code {proc.poll()})"
            ) from error
        self._conn = conn
        self._proc = proc
        self.pid = pid
        self._incarnation += 1
        self._sent = self._acked = 0
        self._counts = {}
        self._started = {}
        threading.Thread(
            target=self._read_loop,
            args=(conn, self._incarnation),
            name="callbacks-sidecar-reader",
            daemon=True,
        ).start()

    def _died(self, incarnation: int) -> None:
        """Account for a sidecar that died: what it did not acknowledge is lost."""
        with self._lock:
            if incarnation != self._incarnation or self._conn is None:
                return
            lost = self._sent - self._acked
            self.lost += lost
            for name, (delivered, errors) in self._counts.items():
                base = self._base_counts.get(name, (0, 0))
                self._base_counts[name] = (base[0] + delivered, base[1] + errors)
            self._counts = {}
            conn, self._conn = self._conn, None
            proc = None
            if not self._closing:  # else close() reaps it
                proc, self._proc = self._proc, None
            waiting, self._waiting = self._waiting, {}
        if not self._closing:
            logger.warning(
                "callbacks sidecar (pid %s) died; %d events it had not handled are lost",
                self.pid,
                lost,
            )
        conn.close()
        if proc is not None:
            _reap(proc, 1.0)
        for request in waiting.values():
            request.done.set()

    def _restart(self) -> bool:
        """Start a new sidecar after one died, and register the plugins again there."""
        with self._lock:
            if self._conn is not None:
                return True
            if self._forked:
                self._forked = False  # a forked child's first sidecar is not a restart
            elif self._gave_up or self.restarts >= _MAX_RESTARTS:
                self._gave_up = True
                return False
            else:
                self.restarts += 1
            try:
                self._start_locked()
            except SidecarUnavailable as error:
                logger.warning("callbacks sidecar could not be restarted: %s", error)
                return False
            conn = self._conn
        assert conn is not None
        for name, (spec, section) in list(self.plugins.items()):
            token = next(self._tokens)
            self._send(conn, [("register", token, name, spec, section)])
        return True

    def close(self, timeout: float) -> bool:
        """Ask the sidecar to shut down what is left and exit; wait at most ``timeout``."""
        if self.closed:
            return True
        self._closing = True
        ok = self._request("exit", timeout) is not None
        self.closed = True
        with self._lock:
            conn, self._conn = self._conn, None
            proc, self._proc = self._proc, None
        if conn is not None:
            conn.close()  # the sidecar reads what was sent, then sees the end: it finishes, exits
        if proc is not None:
            try:
                proc.wait(max(0.1, timeout) if ok else 0.0)
            except subprocess.TimeoutExpired:
                # Still working through what it was sent (a cold start can take seconds): never
                # killed for it; the interpreter's exit waits for it, within a bound.
                _finishing.append(proc)
                ok = False
        self._queue.append(None)
        self._wakeup.set()
        return ok

    # -- the event path (caller's thread) -------------------------------------------------------

    def enqueue(self, item: Any) -> None:
        """Queue an event for the sidecar. Never blocks; drops (counted) when full."""
        queue = self._queue
        if len(queue) >= self.queue_size:
            self.dropped += 1
            return
        queue.append(item)

    def enqueue_trace_start(self, trace: Trace) -> None:
        """Queue the start of a trace."""
        self.enqueue((True, trace))

    def enqueue_trace_end(self, trace: Trace) -> None:
        """Queue the end of a trace."""
        self.enqueue((False, trace))

    # -- requests -----------------------------------------------------------------------------

    def _request(self, kind: str, timeout: float, *args: Any) -> Any:
        """Queue a request behind everything queued so far and wait for the sidecar's answer;
        ``None`` on time-out or if the sidecar died."""
        if self.closed:
            return None
        request = _Request(kind, next(self._tokens), *args)
        self._queue.append(request)
        self._wakeup.set()
        if not request.done.wait(timeout):
            self._waiting.pop(request.token, None)
            return None
        return request.result

    def register(self, name: str, spec: tuple[str, str], section: dict[str, Any]) -> bool:
        """Load and configure a plugin in the sidecar; raise :class:`SidecarUnavailable` if it
        cannot. False when its ``callbacks_configure`` returned False (it wants no events)."""
        if self._conn is None:
            self.start()
        answer = self._request("register", _REGISTER_TIMEOUT_S, name, spec, section)
        if answer is None:
            raise SidecarUnavailable("no answer to the registration")
        if answer not in ("ok", "off"):
            raise SidecarUnavailable(str(answer))
        self.plugins[name] = (spec, section)
        return answer == "ok"

    def post(self, kind: str, *args: Any) -> _Done | None:
        """Queue a request behind everything queued so far and return at once; ``None`` once
        the link is closed. ``"flush"``: every item queued before is handled and the plugin's
        ``callbacks_flush`` ran; ``"unregister"``: its ``callbacks_shutdown`` ran and it is gone
        from the sidecar."""
        if self.closed:
            return None
        request = _Request(kind, next(self._tokens), *args)
        self._queue.append(request)
        self._wakeup.set()
        return _Done(request)

    def forget(self, name: str, timeout: float) -> None:
        """A plugin has left; the sidecar exits with the last one."""
        self.plugins.pop(name, None)
        if not self.plugins:
            self.close(timeout)

    def stats(self) -> dict[str, Any] | None:
        """The sidecar manager's ``stats()``, or ``None`` if it did not answer within 2 s.

        Asked directly on the socket, ahead of what is still queued here: queued behind a
        backlog (a sidecar behind a burst), ``stats()`` waited for all of it, 2 s per plugin.
        The answer counts what the sidecar handled so far; ``queue_depth`` says what waits."""
        conn = self._conn
        if conn is None or self.closed:
            return None
        request = _Request("stats", next(self._tokens))
        self._waiting[request.token] = request
        sent = self._send_lock.acquire(timeout=_STATS_TIMEOUT_S)
        if sent:
            try:
                sent = conn is self._conn and self._send(conn, [("stats", request.token)])
            finally:
                self._send_lock.release()
        if not sent or not request.done.wait(_STATS_TIMEOUT_S):
            self._waiting.pop(request.token, None)
            return None
        answer = request.result
        return answer if isinstance(answer, dict) else None

    def counts(self, name: str) -> tuple[int, int]:
        """(delivered, errors) of a plugin, over every sidecar this link started."""
        base = self._base_counts.get(name, (0, 0))
        now = self._counts.get(name, (0, 0))
        return base[0] + now[0], base[1] + now[1]

    @property
    def queue_depth(self) -> int:
        """Items waiting to be sent."""
        return len(self._queue)

    @property
    def running(self) -> bool:
        """True while a sidecar process is connected."""
        return self._conn is not None

    # -- sender and reader threads ------------------------------------------------------------

    def _send_loop(self) -> None:
        queue = self._queue
        wakeup = self._wakeup
        while True:
            if not queue:
                wakeup.wait(_LINGER_S)
                wakeup.clear()
                continue
            batch: list[Any] = []
            requests: list[_Request] = []
            events = 0
            stop = False
            while queue and len(batch) < _BATCH:
                item = queue.popleft()
                if item is None:
                    stop = True
                    break
                if type(item) is _Request:
                    requests.append(item)
                    self._waiting[item.token] = item
                    batch.append((item.kind, item.token, *item.args))
                    continue
                try:
                    batch.append(self._record(item))
                    events += 1
                except Exception:  # never expected: the wire format never raises
                    logger.exception("callbacks sidecar: could not convert %r", type(item))
                    self.dropped += 1
            if batch:
                self._deliver(batch, events, requests)
            if stop:
                return

    def _deliver(self, batch: list[Any], events: int, requests: list[_Request]) -> None:
        for _attempt in range(2):
            conn = self._conn
            if conn is None and not self.closed and self._restart():
                conn = self._conn
            if conn is None:
                break
            with self._lock:  # counted under the lock that _died reads it under: exact
                alive = conn is self._conn
                if alive:
                    self._sent += events
                    incarnation = self._incarnation
            if not alive:
                continue  # it died just now: send to the next one
            if not self._send(conn, batch):
                self._died(incarnation)  # counts this batch as lost with the rest
                for request in requests:
                    request.done.set()
            return
        self.dropped += events
        for request in requests:
            self._waiting.pop(request.token, None)
            request.done.set()

    def _send(self, conn: Connection, batch: list[Any]) -> bool:
        try:
            data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
            with self._send_lock:  # the sender's batches and stats() requests
                conn.send_bytes(data)
            return True
        except Exception:  # the sidecar is gone, or the socket was closed under us
            return False

    def _record(self, item: Any) -> dict[str, Any]:
        if type(item) is Event:
            if item[2] is EventPhase.START:
                started = self._started
                if len(started) >= _MAX_STARTS_KEPT:
                    started.pop(next(iter(started)))
                started[item[0]] = None
                return event_start_record(item)
            if item[0] in self._started:
                # This sidecar got the start, inputs and all: the end does not carry them again
                # (a third of the bytes of a LlamaIndex query, pickled here, unpickled there).
                del self._started[item[0]]
                record = event_record(item, {}, derived=False)
                record["inputs"] = None
                return record
            return event_record(item, None, derived=False)
        starting, trace = item
        record = trace_record(trace, status="running" if starting else None)
        record["implicit"] = trace.implicit
        if not starting:
            record["trace_map"] = trace.trace_map
            record["durations_ns"] = {str(t): d for t, d in trace.durations_ns.items()}
        return record

    def _read_loop(self, conn: Connection, incarnation: int) -> None:
        while True:
            try:
                message = conn.recv()
            except Exception:  # EOF, or the socket closed under us (close(), fork)
                break
            if message[0] == "ack":
                self._acked = message[1]
                self._counts.update(message[2])
            elif message[0] == "reply":
                request = self._waiting.pop(message[1], None)
                if request is not None:
                    request.result = message[2]
                    request.done.set()
        self._died(incarnation)

    # -- fork ---------------------------------------------------------------------------------

    def _reinit_after_fork(self) -> None:
        # The parent's sidecar and socket stay the parent's; the child starts its own sidecar
        # (lazily, at its first event) with the same plugins, and counts only its own events.
        conn = self._conn
        if conn is not None:
            try:
                os.close(conn.fileno())  # our copy only; the parent's stays open
            except OSError:
                pass
            conn._handle = None  # type: ignore[attr-defined]  # never close it twice
        self.dropped = self.lost = self.restarts = 0
        self.pid = None
        self._base_counts = {}
        self._counts = {}
        self._reset_state()
        self._forked = True


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


class ProcessChannel(PluginChannel):
    """A plugin that runs in the sidecar: events go to the link, flush and shutdown are requests
    to the sidecar, stats merge the sidecar's counters with the link's."""

    def __init__(self, name: str, plugin: object, link: SidecarLink, *, strict: bool) -> None:
        super().__init__(name, plugin, "inline", strict=strict)  # "inline": no worker thread here
        self.mode = "process"  # type: ignore[assignment]
        self.link = link
        self._last_remote: dict[str, Any] = {}
        # The same bound method for every plugin of this link, so the registry queues each event
        # once for the sidecar, whatever number of its plugins hear it.
        self.enqueue = link.enqueue  # type: ignore[method-assign]

    def call(self, calls: Any, item: Any, count: bool = True) -> None:
        """Lifecycle hooks of the app's copy of the plugin do not run: the plugin lives in the
        sidecar (configured, flushed and shut down there; a forked child gets its own)."""

    def post(self, action: Callable[[], Any] | None) -> _Done | None:  # type: ignore[override]
        """Flush this plugin in the sidecar behind everything queued so far (``action``, the
        app-side lifecycle call, does not apply: the sidecar runs the plugin's own flush)."""
        return self.link.post("flush", self.name, _LIFECYCLE_TIMEOUT_S)

    def run_on_worker(self, action: Callable[[], Any] | None, timeout: float) -> bool:
        done = self.post(action)
        return done is not None and done.wait(timeout)

    def request_stop(self) -> None:
        """Ask the sidecar to shut this plugin down once what was queued before is handled."""
        if not self._closed:
            self._closed = True
            self._stopping = self.link.post("unregister", self.name, _LIFECYCLE_TIMEOUT_S)

    def wait_stopped(self, timeout: float) -> bool:
        """Wait for the plugin's shutdown in the sidecar; the sidecar exits with its last
        plugin."""
        deadline = time.monotonic() + timeout
        stopping = getattr(self, "_stopping", None)
        ok = stopping is not None and stopping.wait(timeout)
        if ok and stopping is not None and isinstance(stopping.request.result, dict):
            self._last_remote = stopping.request.result
        self.link.forget(self.name, max(0.0, deadline - time.monotonic()))
        return ok

    def stop(self, timeout: float) -> bool:
        self.request_stop()
        return self.wait_stopped(timeout)

    def is_worker_thread(self) -> bool:
        return False

    def trace_queue(self, hook: str) -> Callable[[Trace], None]:
        """The function that queues a trace for ``on_trace_start`` or ``on_trace_end``."""
        link = self.link
        return link.enqueue_trace_start if hook == "on_trace_start" else link.enqueue_trace_end

    @property
    def delivered(self) -> int:
        """Events and traces handed to the plugin's hooks in the sidecar."""
        return self.link.counts(self.name)[0]

    @property
    def queue_depth(self) -> int:
        """Items waiting to be sent to the sidecar (shared by its plugins)."""
        return self.link.queue_depth

    @property
    def stuck(self) -> bool:
        return False

    def stats(self) -> dict[str, Any]:
        """The sidecar's counters for this plugin (its own ``callbacks_stats`` under
        ``"plugin"``), plus the link's: ``dropped`` (not sent), ``lost`` (sent to a sidecar that
        died first), and ``sidecar`` (pid, running, restarts)."""
        link = self.link
        fresh = link.stats() if not self._closed else None
        if fresh is not None and self.name in fresh:
            self._last_remote = fresh[self.name]
        remote: dict[str, Any] = self._last_remote  # after shutdown: as it left the sidecar
        delivered, errors = link.counts(self.name)
        out: dict[str, Any] = {}
        if "plugin" in remote:
            out["plugin"] = remote["plugin"]
        out.update(
            {
                "mode": "process",
                "delivered": delivered,
                "errors": errors,
                "errors_by_hook": dict(remote.get("errors_by_hook", {})),
                "dropped": link.dropped,
                "lost": link.lost,
                "queue_depth": link.queue_depth,
                "stuck": bool(remote.get("stuck", False)),
                "sidecar": {"pid": link.pid, "running": link.running, "restarts": link.restarts},
            }
        )
        return out

    def _reinit_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._closed = False


def open_process_channel(registry: Registry, name: str, plugin: object) -> ProcessChannel | None:
    """Register ``plugin`` in the registry's sidecar (started on first use) and return its
    channel; ``None``, with a warning, if the sidecar cannot run it."""
    settings = registry.settings
    link: SidecarLink | None = getattr(registry, "sidecar", None)
    try:
        spec = plugin_spec(plugin)
        if link is None or link.closed:
            host = settings.model_dump(
                exclude={"plugins", "disable", "delivery", "instrument", "sidecar_python"}
            )
            host["strict"] = False
            link = SidecarLink(host, settings.queue_size, settings.sidecar_python)
            registry.sidecar = link  # type: ignore[attr-defined]
        section = dict(registry.config.sections.get(name.lower(), {}))
        listening = link.register(name, spec, section)
    except SidecarUnavailable as error:
        logger.warning(
            "callbacks plugin %r runs in-process: the sidecar process cannot run it (%s)",
            name,
            error,
        )
        return None
    channel = ProcessChannel(name, plugin, link, strict=settings.strict)
    channel.listening = listening
    return channel


def _wait_for_finishing_sidecars() -> None:
    """At exit, wait (at most 60 s in all) for sidecars still finishing their plugins' work, so a
    short program's data lands before it returns; one still running after that is left to
    finish on its own."""
    deadline = time.monotonic() + SIDECAR_EXIT_WAIT_S
    for proc in _finishing:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("callbacks sidecar (pid %s) is still finishing; left running", proc.pid)


atexit.register(_wait_for_finishing_sidecars)


def _after_fork_in_child() -> None:
    _finishing.clear()  # the parent's
    for link in list(_links):
        if not link.closed:
            link._reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
