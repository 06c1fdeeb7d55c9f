"""Own the one Aim run: open it on first use, track records into it, close it.

Aim is imported here, lazily, so that loading the plugin (entry-point discovery, ``callbacks
plugins``) does not pay for importing Aim. Every method runs on the plugin's worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from callbacks import payloads

from .records import Record, TextRecord
from .settings import AimSettings, resolve_repo

if TYPE_CHECKING:
    from aim.sdk.run import Run

__all__ = ["AimRecordError", "AimRecorder", "AimUnavailableError"]

logger = logging.getLogger(__name__)


class AimUnavailableError(RuntimeError):
    """The Aim run could not be opened, or was already closed; nothing can be recorded."""


class AimRecordError(RuntimeError):
    """Some records of one event could not be tracked (the others were)."""


class AimRecorder:
    """Tracks records into one Aim run, opened on the first :meth:`record`."""

    def __init__(self, settings: AimSettings) -> None:
        self._settings = settings
        self._repo = resolve_repo(settings.repo)
        self._run: Run | None = None
        self._open_error: BaseException | None = None
        self._closed = False

    @property
    def repo(self) -> str:
        """The repository the run is written to (absolute directory or remote URL)."""
        return self._repo

    @property
    def run_hash(self) -> str | None:
        """The run's hash once it is open, else ``None``."""
        return self._run.hash if self._run is not None else None

    def record(self, records: Iterable[Record]) -> None:
        """Track ``records``, opening the run first if needed.

        Raises :class:`AimUnavailableError` if the run cannot be opened (once tried, opening is
        not retried for every event), and :class:`AimRecordError` if some records failed.
        """
        batch = list(records)
        if not batch:
            return
        run = self._ensure_run()
        from aim.sdk.objects.text import Text

        failures: list[tuple[Record, Exception]] = []
        for rec in batch:
            try:
                if isinstance(rec, TextRecord):
                    run.track(
                        Text(rec.text), name=rec.name, step=rec.step, context=dict(rec.context)
                    )
                else:
                    run.track(rec.value, name=rec.name, step=rec.step, context=dict(rec.context))
            except Exception as error:  # the rest of the batch is still tracked
                failures.append((rec, error))
        if failures:
            first, cause = failures[0]
            raise AimRecordError(
                f"aim could not track {len(failures)} of {len(batch)} records; first: "
                f"{first.name!r} with context {dict(first.context)!r}: {cause!r}"
            ) from cause

    def flush(self) -> None:
        """Wait until a remote repository has received everything tracked so far.

        A local repository is written synchronously by ``track``, so there is nothing to wait for.
        """
        run = self._run
        if run is None or not run.repo.is_remote_repo:
            return
        # Aim has no public flush; its own close() drains this same queue.
        client = getattr(run.repo, "_client", None)
        if client is not None:
            client.get_queue().wait_for_finish()

    def close(self) -> None:
        """Finish the run (readers then see it as ended). Later records raise."""
        self._closed = True
        run, self._run = self._run, None
        if run is not None:
            run.close()
            logger.debug("closed aim run %s in %s", run.hash, self._repo)

    def _ensure_run(self) -> Run:
        if self._run is not None:
            return self._run
        if self._closed:
            raise AimUnavailableError("the aim run is closed (callbacks_shutdown already ran)")
        if self._open_error is not None:
            raise AimUnavailableError(
                f"the aim run could not be opened in {self._repo!r}: {self._open_error!r}"
            ) from None  # the first failure was raised with its traceback; don't repeat it
        try:
            self._run = self._open()
        except Exception as exc:
            self._open_error = exc
            raise AimUnavailableError(
                f"could not open an aim run in {self._repo!r} (setting aim.repo): {exc!r}; "
                "set CALLBACKS_AIM__REPO or [aim] repo to a writable directory"
            ) from exc
        return self._run

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


def _param_value(value: Any) -> Any:
    # Aim stores only native values; anything else becomes JSON-shaped (or its str()).
    return payloads.to_jsonable(value)
