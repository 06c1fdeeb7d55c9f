"""Flush on SIGTERM.

Containers and ``multiprocessing.Pool`` stop processes with SIGTERM, and the default action ends
the process at once, without exit hooks: every event still queued for a background plugin is
lost. When the application has no SIGTERM handler of its own, the host installs one that shuts
every manager down (each within its ``shutdown_timeout``) and then ends the process exactly as
the default action would: SIGTERM is raised again with its default disposition, so the process
is killed by signal 15 (exit status 143 in a shell). An application's own handler is never
replaced: installed before the first manager, it is left alone; installed after, it wins.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["flush_on_sigterm"]

_installed = False


def flush_on_sigterm(shutdown_all: Callable[[], None]) -> None:
    """Install the SIGTERM handler (once per process, from the main thread, and only while
    SIGTERM has its default disposition)."""
    global _installed
    if _installed or not hasattr(signal, "SIGTERM"):
        return
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, functools.partial(_on_sigterm, shutdown_all))
    except (ValueError, OSError):  # not the main interpreter, or signals unavailable
        return
    _installed = True


def _on_sigterm(shutdown_all: Callable[[], None], signum: int, frame: FrameType | None) -> None:
    try:
        shutdown_all()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        # Not reached: the default action ends the process before kill() returns. Should the
        # signal be blocked on this thread, end as a shell reports a SIGTERM death.
        os._exit(128 + signal.SIGTERM)
