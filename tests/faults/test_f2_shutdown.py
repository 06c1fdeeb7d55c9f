"""Fault 2: shutdown gives every plugin its time. Plugins shut down concurrently, each gets the
whole timeout, the total stays bounded by it, only plugins that really did not finish are
reported stuck, and every healthy plugin's ``callbacks_shutdown`` has run."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from callbacks import CallbackManager, EventType, hookimpl

from ._child import child_env, start_script, write_script

TIMEOUT = 1.0


class Hung:
    """A background plugin whose shutdown never returns (until the test releases it)."""

    callbacks_delivery = "background"

    def __init__(self, name: str, release: threading.Event) -> None:
        self.callbacks_name = name
        self.release = release

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        self.release.wait(60.0)


class Healthy:
    """A background plugin whose shutdown takes ``work_s`` seconds of real work, given the
    timeout it was told about."""

    def __init__(self, name: str, work_s: float, delivery: str = "background") -> None:
        self.callbacks_name = name
        self.callbacks_delivery = delivery
        self.work_s = work_s
        self.shutdown_ran = threading.Event()
        self.given: float | None = None
        self.events = 0

    @hookimpl
    def on_event_end(self, event) -> None:
        self.events += 1

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        self.given = timeout
        time.sleep(self.work_s)  # stands for a final export (work, not synchronisation)
        self.shutdown_ran.set()


def test_one_hung_plugin_leaves_the_others_their_whole_timeout() -> None:
    release = threading.Event()
    hung = Hung("hung", release)
    healthy = [Healthy(f"healthy{i}", work_s=0.6 * TIMEOUT) for i in range(3)]
    inline = Healthy("inline", work_s=0.0, delivery="inline")
    cm = CallbackManager(plugins=[hung, *healthy, inline])
    for _ in range(100):
        with cm.event(EventType.LLM):
            pass
    try:
        started = time.monotonic()
        ok = cm.shutdown(timeout=TIMEOUT)
        elapsed = time.monotonic() - started
        stats = cm.stats()
    finally:
        release.set()
    assert ok is False
    # Three plugins of 0.6 s each and a hung one: sequentially that is > 1.8 s.
    assert elapsed < TIMEOUT + 0.4, elapsed
    for plugin in [*healthy, inline]:
        assert plugin.shutdown_ran.is_set(), plugin.callbacks_name
        assert plugin.events == 100
        assert plugin.given is not None and plugin.given > 0.9 * TIMEOUT, plugin.given
        assert stats[plugin.callbacks_name]["stuck"] is False, stats
    assert stats["hung"]["stuck"] is True


def test_shutdown_at_interpreter_exit_runs_every_healthy_plugin(tmp_path: Path) -> None:
    """A hung plugin registered first; at exit the healthy one still writes its file, and the
    process exits within the timeout."""
    out = tmp_path / "healthy.txt"
    script = write_script(
        tmp_path,
        f"""
        import threading, sys
        from callbacks import CallbackManager, EventType, hookimpl

        class Hung:
            callbacks_name = "hung"
            @hookimpl
            def callbacks_shutdown(self, timeout):
                threading.Event().wait(60)

        class Healthy:
            callbacks_name = "healthy"
            def __init__(self):
                self.events = 0
            @hookimpl
            def on_event_end(self, event):
                self.events += 1
            @hookimpl
            def callbacks_shutdown(self, timeout):
                open({str(out)!r}, "w").write(str(self.events))

        cm = CallbackManager(plugins=[Hung(), Healthy()], config={{"shutdown_timeout": {TIMEOUT}}})
        for _ in range(500):
            with cm.event(EventType.LLM):
                pass
        print("exiting", flush=True)
        """,
    )
    child = start_script(script, env=child_env())
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "exiting"
    started = time.monotonic()
    child.wait(timeout=30)
    elapsed = time.monotonic() - started
    assert child.returncode == 0, child.stderr.read() if child.stderr else ""
    assert out.read_text() == "500"
    assert elapsed < TIMEOUT + 1.0, elapsed
