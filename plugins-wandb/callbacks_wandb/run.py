"""The plugin's W&B run: started in the background on first use, logged to, finished once.

``wandb.init`` takes seconds (importing wandb, starting ``wandb-core``). Done on the plugin's
worker, it would hold up every event behind it. So :meth:`RunHandle.start` runs it on a setup
thread of its own while the worker keeps collecting, and the plugin's ``on_ready`` callback logs
what was held (and, if shutdown gave up waiting, finishes the run).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .settings import WandbSettings

if TYPE_CHECKING:
    from wandb.sdk.wandb_run import Run

__all__ = ["RunHandle", "WandbInitError"]

logger = logging.getLogger(__name__)


class WandbInitError(RuntimeError):
    """``wandb.init`` failed; W&B logging stays off for this process."""


class RunHandle:
    """Owns one W&B run, created by :meth:`start` on a setup thread."""

    def __init__(
        self, settings: WandbSettings, on_ready: Callable[[RunHandle], Any] | None = None
    ) -> None:
        self.settings = settings
        self.on_ready = on_ready
        """Called on the setup thread once ``wandb.init`` has returned (or failed)."""
        self.failed: BaseException | None = None
        """Why ``wandb.init`` failed, once it has; nothing is logged after that."""
        self.sync_file: str | None = None
        """Path of the run's ``.wandb`` file, once the run exists."""
        self.run_dir: str | None = None
        """The run's directory (``.../wandb/offline-run-*`` offline): what ``wandb sync`` takes."""
        self.requested_dir: str | None = None
        """Where the run was asked to go: the ``dir`` setting, else ``WANDB_DIR``, else the
        current directory."""
        self.dir_fallbacks = 0
        """Runs that wandb put elsewhere than :attr:`requested_dir` (it could not write there)."""
        self._run: Run | None = None
        self._pid = os.getpid()
        self._setup: threading.Thread | None = None
        self._done = threading.Event()
        self.init_error: WandbInitError | None = None
        """The error to report when ``wandb.init`` failed on the setup thread."""

    def start(self) -> None:
        """Run ``wandb.init`` on a setup thread, once per process (again in a forked child)."""
        if self._pid != os.getpid():
            # A run does not survive fork: the child starts its own.
            self._run, self._pid, self.failed = None, os.getpid(), None
            self._setup, self._done = None, threading.Event()
        if self._setup is not None or self.failed is not None:
            return
        # A daemon: W&B's own exit hooks run before the interpreter would join this thread, so
        # waiting for it at exit could not save the data; shutdown reports what is lost.
        self._setup = threading.Thread(target=self._start, name="callbacks-wandb-init", daemon=True)
        self._setup.start()

    @property
    def requested(self) -> bool:
        """True once :meth:`start` was called in this process."""
        return self._setup is not None and self._pid == os.getpid()

    @property
    def starting(self) -> bool:
        """True while the setup thread is still running ``wandb.init``."""
        return self._setup is not None and not self._done.is_set()

    def wait(self, timeout: float | None) -> bool:
        """Wait for a started setup (at most ``timeout`` s); True when there is none left."""
        return self._setup is None or self._done.wait(timeout)

    def _start(self) -> None:
        try:
            self.get()
        except WandbInitError as error:
            self.init_error = error
        except Exception as exc:
            self.failed = exc
            logger.debug("wandb.init failed", exc_info=True)
        finally:
            self._done.set()
            if self.on_ready is not None:
                self.on_ready(self)

    @property
    def started(self) -> bool:
        """True once a run exists in this process."""
        return self._run is not None and self._pid == os.getpid()

    @property
    def usable(self) -> bool:
        """True while data can still be logged (not failed, not finished)."""
        if self.failed is not None:
            return False
        return not (self.started and getattr(self._run, "_is_finished", False))

    def get(self) -> Run:
        """The run, created by ``wandb.init`` on first call (again in a forked child).

        Raises :class:`WandbInitError` the first time ``wandb.init`` fails.
        """
        if self._pid != os.getpid():
            # A run does not survive fork: the child starts its own.
            self._run, self._pid, self.failed = None, os.getpid(), None
        if self._run is None:
            self._run = self._init()
            self.sync_file = str(self._run.settings.sync_file)
            self.run_dir = str(self._run.settings.sync_dir)
            self._check_dir(self.run_dir)
        return self._run

    def _check_dir(self, run_dir: str) -> None:
        # wandb falls back to the temp directory, silently, when it cannot write where asked.
        requested = self.settings.dir or os.environ.get("WANDB_DIR") or os.getcwd()
        self.requested_dir = os.path.abspath(os.path.expanduser(str(requested)))
        wanted = os.path.realpath(self.requested_dir)
        actual = os.path.realpath(run_dir)
        if os.path.commonpath([wanted, actual]) != wanted:
            self.dir_fallbacks += 1
            logger.warning(
                "callbacks-wandb: W&B could not write to %s; the run was written to %s instead "
                "(sync it with: wandb sync %s)",
                self.requested_dir,
                run_dir,
                run_dir,
            )

    def _init(self) -> Run:
        import wandb

        settings = self.settings
        kwargs = settings.init_kwargs()
        wb_settings: dict[str, Any] = {"silent": True, "console": "off"}
        if settings.api_key is not None:
            wb_settings["api_key"] = settings.api_key.get_secret_value()
        try:
            # "create_new" leaves any run the application started itself untouched.
            return wandb.init(
                **kwargs,
                config={"callbacks_wandb": settings.run_config()},
                reinit="create_new",
                settings=wandb.Settings(**wb_settings),
            )
        except Exception as exc:
            self.failed = exc
            reason = f"{type(exc).__name__}: {str(exc).rstrip('.')}"
            secret = wb_settings.get("api_key")
            shown = reason.replace(secret, "**********") if secret else reason
            error = WandbInitError(
                f"wandb.init failed with {kwargs}: {shown}. "
                "Fix the [wandb] settings (CALLBACKS_WANDB__*), or set mode = 'offline' to log "
                "without an account; W&B logging is off until restart."
            )
            if secret and secret in reason:
                # The cause would print the key in the traceback.
                raise error from None
            raise error from exc

    def keep_out_of_summary(self, key_glob: str) -> None:
        """Do not copy logged keys matching ``key_glob`` (``"trace.*"``: the parts of the media
        value logged as ``trace``) into the run summary. By default wandb-core writes every
        logged value twice: in the history row and, as the latest value, in a summary record."""
        try:
            self.get().define_metric(key_glob, summary="none")
        except Exception:
            logger.warning("callbacks-wandb: define_metric(%r) failed", key_glob, exc_info=True)

    def log(self, data: dict[str, Any]) -> None:
        """``run.log(data)`` on the run (created if needed)."""
        self.get().log(data)

    def finish(self) -> None:
        """Finish the run if one was started; data not finished is lost."""
        if self.started and self._run is not None:
            run, self._run = self._run, None
            run.finish()
