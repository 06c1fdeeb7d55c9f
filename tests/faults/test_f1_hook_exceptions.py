"""Fault 1: any BaseException raised by a hook is isolated, counted and logged, on every path;
a worker thread never dies from a hook. The only exception is the user's Ctrl-C
(KeyboardInterrupt on the application's thread during an inline hook), which reaches the app.
A plugin whose import calls sys.exit() stops neither the others nor ``callbacks plugins``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from callbacks import CallbackManager, EventType, hookimpl
from callbacks.testing import RecordingPlugin

from ._child import PYTHON, child_env

ESCAPES = [asyncio.CancelledError, SystemExit, GeneratorExit, KeyboardInterrupt]
"""BaseExceptions that are not Exceptions. KeyboardInterrupt raised by a hook *itself* (not
delivered by SIGINT) on a background worker is a plugin bug like any other."""


class Raiser:
    """Raises ``error`` from every event, trace and lifecycle hook."""

    callbacks_name = "raiser"

    def __init__(self, error: type[BaseException], delivery: str) -> None:
        self.error = error
        self.callbacks_delivery = delivery
        self.calls = 0

    def _raise(self) -> None:
        self.calls += 1
        raise self.error()

    @hookimpl
    def on_trace_start(self, trace) -> None:
        self._raise()

    @hookimpl
    def on_event_start(self, event) -> None:
        self._raise()

    @hookimpl
    def on_event_end(self, event) -> None:
        self._raise()

    @hookimpl
    def on_trace_end(self, trace) -> None:
        self._raise()

    @hookimpl
    def callbacks_flush(self, timeout: float) -> None:
        self._raise()

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        self._raise()


def _workload(cm: CallbackManager, pairs: int) -> str:
    """One trace with ``pairs`` events through every public entry point; returns the result the
    application computed (which must be its own)."""
    with cm.as_trace("request"):
        for i in range(pairs):
            if i % 2:
                with cm.event(EventType.LLM, {"prompt": "p"}) as scope:
                    scope.on_end({"completion": "c"})
            else:
                event_id = cm.on_event_start(EventType.RETRIEVE, {"query_str": "q"})
                cm.on_event_end(EventType.RETRIEVE, {"nodes": []}, event_id=event_id)
    return "app result"


@pytest.mark.parametrize("error", ESCAPES[:3], ids=lambda e: e.__name__)
def test_inline_hook_base_exception_never_reaches_the_app(error) -> None:
    raiser = Raiser(error, "inline")
    recorder = RecordingPlugin()
    cm = CallbackManager(plugins=[raiser, recorder])
    try:
        assert _workload(cm, 10) == "app result"
        assert cm.flush(timeout=5.0) is True
    finally:
        assert cm.shutdown(timeout=5.0) is True
    # trace start + 10 starts + 10 ends + trace end + flush + shutdown
    assert raiser.calls == 24
    stats = cm.stats()["raiser"]
    assert stats["errors"] == 24, stats
    assert len(recorder.events) == 20 and len(recorder.traces) == 1


@pytest.mark.parametrize("error", ESCAPES, ids=lambda e: e.__name__)
def test_background_hook_base_exception_never_kills_the_worker(error) -> None:
    raiser = Raiser(error, "background")
    cm = CallbackManager(plugins=[raiser])
    try:
        for _ in range(3):
            assert _workload(cm, 100) == "app result"
            # The worker is alive: it reaches the flush marker and runs (and isolates) the hook.
            assert cm.flush(timeout=5.0) is True
        stats = cm.stats()["raiser"]
        assert stats["queue_depth"] == 0 and stats["dropped"] == 0
    finally:
        assert cm.shutdown(timeout=5.0) is True
    # per round: trace start + 100 starts + 100 ends + trace end + flush; then shutdown
    assert raiser.calls == 3 * 203 + 1
    assert cm.stats()["raiser"]["errors"] == 3 * 203 + 1


def test_background_errors_are_logged(caplog) -> None:
    cm = CallbackManager(plugins=[Raiser(SystemExit, "background")])
    try:
        with caplog.at_level("ERROR", logger="callbacks"):
            _workload(cm, 2)
            assert cm.flush(timeout=5.0)
    finally:
        cm.shutdown(timeout=5.0)
    messages = [r.getMessage() for r in caplog.records]
    assert any("raiser" in m and "SystemExit" in m for m in messages), messages


def test_ctrl_c_during_an_inline_hook_reaches_the_app() -> None:
    """A real SIGINT, delivered while an inline hook runs on the main thread."""
    assert threading.current_thread() is threading.main_thread()
    entered = threading.Event()
    release = threading.Event()

    class Blocking:
        callbacks_name = "blocking"
        callbacks_delivery = "inline"

        @hookimpl
        def on_event_start(self, event) -> None:
            entered.set()
            # Busy in Python code, so the interrupt lands inside the hook (a blocking wait
            # would defer it until the wait returns).
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and not release.is_set():
                pass

    def press_ctrl_c() -> None:
        entered.wait(10.0)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    cm = CallbackManager(plugins=[Blocking()])
    sender = threading.Thread(target=press_ctrl_c)
    try:
        sender.start()
        with pytest.raises(KeyboardInterrupt):
            with cm.event(EventType.LLM):
                pass
    finally:
        release.set()
        sender.join()
        signal.signal(signal.SIGINT, previous)
        cm.shutdown(timeout=5.0)
    assert cm.stats()["blocking"]["errors"] == 0


def _fake_distribution(root: Path, name: str, entry_points: dict[str, str], module: str) -> None:
    """Lay out an installed distribution as pip does: a module and its .dist-info."""
    (root / f"{name}.py").write_text(module, encoding="utf-8")
    info = root / f"{name}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.0.1\n",
        encoding="utf-8",
    )
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[callbacks]\n{lines}\n", encoding="utf-8")


def test_plugin_import_calling_sys_exit_stops_neither_others_nor_cli(tmp_path: Path) -> None:
    _fake_distribution(
        tmp_path,
        "callbacks_quitter",
        {"quitter": "callbacks_quitter:Plugin"},
        "import sys\nsys.exit('quitter refuses to load')\n",
    )
    env = child_env(PYTHONPATH=str(tmp_path), CALLBACKS_PLUGINS='["quitter", "example"]')
    listing = subprocess.run(
        [PYTHON, "-m", "callbacks", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert listing.returncode == 0, listing.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["example"]["active"] is True
    assert rows["quitter"]["active"] is False
    assert rows["quitter"]["reason"] == "failed to load"
    assert "SystemExit" in rows["quitter"]["error"]

    program = (
        "import callbacks\n"
        "cm = callbacks.get_manager()\n"
        "print(sorted(cm.list_plugins()))\n"
        "print([p.name for p in cm.installed if p.reason == 'failed to load'])\n"
    )
    app = subprocess.run(
        [PYTHON, "-c", program], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert app.returncode == 0, app.stderr[-2000:]
    assert app.stdout.splitlines() == ["['example']", "['quitter']"]
