"""Own the one Aim run: set it up early on a thread of its own, track records into it, close it.

``import aim`` takes 1.5-2.6 s and a run in a new repository about 2.7 s more (a database
migration in a subprocess). Done on first use, that lands in a short program's shutdown window
and its data is lost. So :meth:`AimRecorder.prepare` starts importing Aim when the plugin is
configured (nothing is written then: a process that records no event leaves no run behind), and
:meth:`AimRecorder.start` opens the run on a setup thread at the first record; records that
arrive before the run is open are buffered (bounded) and written as soon as it is. The setup
thread is not a daemon: if the program ends while Aim is still starting, the interpreter waits
for that started work, and the thread writes the buffer and closes the run itself, so a run is
never left "active" with its data missing.

Aim is imported here, lazily, so that loading the plugin does not pay for importing Aim.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from callbacks import payloads

from .commits import grouped_commits, known_tracker, run_stores
from .records import Record, TextRecord
from .settings import AimSettings, resolve_repo

if TYPE_CHECKING:
    from aim.sdk.run import Run

__all__ = ["AimRecordError", "AimRecorder", "AimUnavailableError"]

logger = logging.getLogger(__name__)

MAX_PENDING = 100_000
"""Records held while the run is being set up; beyond this the oldest are dropped (counted)."""


class AimUnavailableError(RuntimeError):
    """The Aim run could not be opened, or was already closed; nothing can be recorded."""


class AimRecordError(RuntimeError):
    """Some records of one event could not be tracked (the others were)."""


class AimRecorder:
    """Tracks records into one Aim run. :meth:`start` opens the run in the background;
    :meth:`record` buffers until it is open."""

    def __init__(self, settings: AimSettings) -> None:
        self._settings = settings
        self._repo = resolve_repo(settings.repo)
        self._run: Run | None = None
        self._stores: list[Any] = []
        self._new_steps_only = False
        self._hash: str | None = None
        self._open_error: BaseException | None = None
        self._open_reported = False
        self._closed = False
        self._lock = threading.RLock()
        self._pending: deque[Record] = deque()
        self._setup: threading.Thread | None = None
        self._importer: threading.Thread | None = None
        self._ready = threading.Event()
        self.tracked = 0
        """Records written to the run."""
        self.dropped = 0
        """Records lost: over :data:`MAX_PENDING` while the run was starting, or never written
        because the run could not be opened."""
        self.closed_by_setup = False
        """True when the run was closed by the setup thread after shutdown gave up waiting."""

    @property
    def repo(self) -> str:
        """The repository the run is written to (absolute directory or remote URL)."""
        return self._repo

    @property
    def run_hash(self) -> str | None:
        """The run's hash once it is open, else ``None``."""
        return self._hash

    @property
    def pending(self) -> int:
        """Records waiting for the run to open."""
        return len(self._pending)

    def prepare(self) -> None:
        """Start importing Aim on a daemon thread, so that opening the run later is quicker.
        Writes nothing."""
        with self._lock:
            if self._importer is None and self._setup is None:
                self._importer = threading.Thread(
                    target=_import_aim, name="callbacks-aim-import", daemon=True
                )
                self._importer.start()

    def start(self) -> None:
        """Begin opening the run, on a setup thread (idempotent)."""
        with self._lock:
            if self._setup is not None or self._closed:
                return
            # Not a daemon (a thread made by the worker, a daemon, would be one by default): the
            # interpreter waits for this started work at exit.
            self._setup = threading.Thread(
                target=self._open_in_background, name="callbacks-aim", daemon=False
            )
            self._setup.start()

    def record(self, records: Iterable[Record]) -> None:
        """Track ``records``, or hold them until the run is open.

        Raises :class:`AimUnavailableError` if the run could not be opened or is closed, and
        :class:`AimRecordError` if some records failed.
        """
        batch = list(records)
        if not batch:
            return
        self.start()
        with self._lock:
            if self._closed:
                self.dropped += len(batch)
                raise AimUnavailableError("the aim run is closed (callbacks_shutdown already ran)")
            if self._open_error is not None:
                self.dropped += len(batch)
                self._open_reported = True
                raise AimUnavailableError(
                    f"could not open an aim run in {self._repo!r} (setting aim.repo): "
                    f"{self._open_error!r}; set CALLBACKS_AIM__REPO or [aim] repo to a writable "
                    "directory"
                ) from None
            run = self._run
            if run is None:
                self._hold(batch)
                return
        # Only this (the worker's) thread tracks once the run is live.
        self._track(run, batch)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` s) for a setup that has started to write what is held, then
        until a remote repository has received everything tracked so far (a local repository is
        written synchronously by ``track``). False if the setup did not finish in time."""
        if self._setup is not None and not self._ready.wait(timeout):
            return False
        self._raise_open_error()
        run = self._run
        if run is None or not run.repo.is_remote_repo:
            return True
        # Aim has no public flush; its own close() drains this same queue.
        client = getattr(run.repo, "_client", None)
        if client is not None:
            client.get_queue().wait_for_finish()
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` s) for a setup that has started, write what is held and
        close the run. If the setup is still running at the deadline, it closes the run itself
        when done. Returns True when the run is closed (or none was ever started)."""
        setup = self._setup
        if setup is not None and setup is not threading.current_thread():
            setup.join(timeout)
        with self._lock:
            self._closed = True
            run, self._run = self._run, None
            if run is None and setup is not None and setup.is_alive():
                logger.warning(
                    "callbacks-aim: aim is still starting in %s; %d record(s) will be written "
                    "and the run closed when it is ready (the program waits for that)",
                    self._repo,
                    len(self._pending),
                )
                return False
        if run is not None:
            _close(run, self._repo)
        return True

    def _raise_open_error(self) -> None:
        # Once, when no record has reported it yet (every record was held before it failed).
        if self._open_error is not None and not self._open_reported:
            self._open_reported = True
            raise AimUnavailableError(
                f"could not open an aim run in {self._repo!r} (setting aim.repo): "
                f"{self._open_error!r}; {self.dropped} record(s) lost"
            ) from self._open_error

    def _hold(self, batch: list[Record]) -> None:
        pending = self._pending
        for rec in batch:
            if len(pending) >= MAX_PENDING:
                pending.popleft()
                self.dropped += 1
            pending.append(rec)

    def _open_in_background(self) -> None:
        if self._importer is not None:
            # Aim's package imports are circular: two threads importing it at once break it.
            self._importer.join()
        try:
            run = self._open()
        except Exception as exc:
            logger.debug("opening the aim run failed", exc_info=True)
            with self._lock:
                self._open_error = exc
                self.dropped += len(self._pending)
                self._pending.clear()
            self._ready.set()
            return
        self._hash = run.hash
        self._stores = run_stores(run)
        self._new_steps_only = known_tracker()
        # Write what was held, batch by batch, without holding the lock while Aim writes (the
        # worker keeps holding new records meanwhile); the run goes live once nothing is held.
        while True:
            with self._lock:
                if not self._pending:
                    closed = self._closed
                    if not closed:
                        self._run = run
                    break
                batch = list(self._pending)
                self._pending.clear()
            try:
                self._track(run, batch)
            except AimRecordError:
                logger.warning("callbacks-aim: held records not all tracked", exc_info=True)
        self._ready.set()
        if closed:
            self.closed_by_setup = True
            _close(run, self._repo)

    def _track(self, run: Run, batch: list[Record]) -> None:
        from aim.sdk.objects.text import Text

        failures: list[tuple[Record, Exception]] = []
        # The run is new, and records.Steps gives every value a step never used before in its
        # sequence: the ranges Aim clears before writing a step are empty.
        with grouped_commits(self._stores, new_steps_only=self._new_steps_only):
            for step, context, group in _calls(batch):
                values = {
                    rec.name: Text(rec.text) if isinstance(rec, TextRecord) else rec.value
                    for rec in group
                }
                try:
                    run.track(values, step=step, context=context)
                    self.tracked += len(group)
                except Exception as error:  # the rest of the batch is still tracked
                    failures.extend((rec, error) for rec in group)
        if failures:
            first, cause = failures[0]
            raise AimRecordError(
                f"aim could not track {len(failures)} of {len(batch)} records; first: "
                f"{first.name!r} with context {dict(first.context)!r}: {cause!r}"
            ) from cause

    def _open(self) -> Run:
        from aim.sdk.run import Run

        s = self._settings
        run = Run(
            repo=self._repo,
            experiment=s.experiment,
            system_tracking_interval=s.system_tracking_interval,
            log_system_params=s.log_system_params,
            capture_terminal_logs=s.capture_terminal_logs,
        )
        try:
            for key, value in s.run_params.items():
                run.set(key, _param_value(value), strict=False)
        except Exception:
            run.close()
            raise
        logger.debug("opened aim run %s in %s", run.hash, self._repo)
        return run


def _calls(batch: list[Record]) -> Iterator[tuple[int, dict[str, Any], list[Record]]]:
    """Consecutive records of one step and context, as one ``run.track({name: value, ...})``
    each: Aim then builds the context, hashes it and stamps the time once for all of them."""
    group: list[Record] = []
    names: set[str] = set()
    for rec in batch:
        if group and (
            rec.step != group[0].step or rec.context != group[0].context or rec.name in names
        ):
            yield group[0].step, _plain(group[0].context), group
            group, names = [], set()
        group.append(rec)
        names.add(rec.name)
    if group:
        yield group[0].step, _plain(group[0].context), group


def _plain(context: Mapping[str, str]) -> dict[str, Any]:
    return context if type(context) is dict else dict(context)


def _import_aim() -> None:
    try:
        import aim.sdk.objects.text
        import aim.sdk.run  # noqa: F401
    except Exception:
        logger.debug("importing aim failed (reported when the run is opened)", exc_info=True)


def _close(run: Run, repo: str) -> None:
    run.close()
    logger.debug("closed aim run %s in %s", run.hash, repo)


def _param_value(value: Any) -> Any:
    # Aim stores only native values; anything else becomes JSON-shaped (or its str()).
    return payloads.to_jsonable(value)
