"""Fault 6: every way a process ends delivers the events queued in a slow background plugin.

A child process queues N events into a slow background plugin (it writes one line per event),
reports "queued" on its stdout, then ends one way or another. The parent counts the lines.
SIGTERM with no handler of the application's own must flush and then end the process exactly as
the default handler would (killed by SIGTERM); an application's own handler is never replaced.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ._child import count_lines, start_script, write_script

N = 3000
TIMEOUT = 5.0

CHILD = """
import os, signal, sys, threading, time
from callbacks import CallbackManager, EventType, hookimpl

path, how, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

class SlowWriter:
    '''A background plugin that writes one line per event, slowly (a remote exporter).'''
    callbacks_name = "slow"
    def __init__(self):
        self.file = open(path, "a", buffering=1)
    @hookimpl
    def on_event_end(self, event):
        time.sleep(0.0002)
        self.file.write(event.id + "\\n")

class Announcer:
    '''Tells the parent when shutdown has begun (inline: its hook runs at once).'''
    callbacks_name = "announcer"
    callbacks_delivery = "inline"
    @hookimpl
    def callbacks_shutdown(self, timeout):
        print("shutting down", flush=True)

if how == "own_handler_before":
    def own(signum, frame):
        print("own handler ran", file=sys.stderr, flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, own)

plugins = [SlowWriter(), Announcer()] if how == "sigterm_during_exit" else [SlowWriter()]
cm = CallbackManager(plugins=plugins, config={"shutdown_timeout": TIMEOUT_S})

if how == "own_handler_after":
    def own(signum, frame):
        print("own handler ran", file=sys.stderr, flush=True)
        sys.exit(4)
    signal.signal(signal.SIGTERM, own)

for _ in range(n):
    with cm.event(EventType.LLM):
        pass
print("queued", flush=True)

if how in ("normal", "sigterm_during_exit"):
    pass
elif how == "sys_exit":
    sys.exit(0)
elif how == "exception":
    raise RuntimeError("unhandled")
else:  # wait for the parent's signal
    threading.Event().wait(60)
""".replace("TIMEOUT_S", repr(TIMEOUT))

CASES = {
    # how: (signal sent by the parent, expected return code)
    "normal": (None, 0),
    "sys_exit": (None, 0),
    "exception": (None, 1),
    "sigint": (signal.SIGINT, -signal.SIGINT),  # as CPython ends on KeyboardInterrupt
    "sigterm": (signal.SIGTERM, -signal.SIGTERM),
    # SIGTERM while the exit-time shutdown drains (as Pool.terminate does to a worker that is
    # already leaving): the handler waits for that shutdown instead of cutting it short
    "sigterm_during_exit": (signal.SIGTERM, -signal.SIGTERM),
    "own_handler_before": (signal.SIGTERM, 3),
    "own_handler_after": (signal.SIGTERM, 4),
}


@pytest.mark.parametrize("how", list(CASES))
def test_every_exit_path_delivers_every_queued_event(how: str, tmp_path: Path) -> None:
    sent, expected_status = CASES[how]
    out = tmp_path / "events.txt"
    script = write_script(tmp_path, CHILD)
    child = start_script(script, str(out), how, str(N))
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.readline().strip() == "queued"
    started = time.monotonic()
    if how == "sigterm_during_exit":
        assert child.stdout.readline().strip() == "shutting down"
    if sent is not None:
        os.kill(child.pid, sent)
    status = child.wait(timeout=30)
    elapsed = time.monotonic() - started
    stderr = child.stderr.read()
    delivered = count_lines(out)
    print(f"{how}: {delivered} of {N} delivered, status {status}, {elapsed:.2f}s")
    assert status == expected_status, stderr[-2000:]
    assert delivered == N, (delivered, stderr[-2000:])
    assert elapsed < TIMEOUT + 2.0
    if how.startswith("own_handler"):
        assert "own handler ran" in stderr


POOL_CHILD = """
import multiprocessing, os, sys, time
from callbacks import CallbackManager, EventType, hookimpl

out_dir, per_task = sys.argv[1], int(sys.argv[2])

class SlowWriter:
    callbacks_name = "slow"
    def __init__(self):
        self.file = None
    @hookimpl
    def on_event_end(self, event):
        if self.file is None:  # one file per process
            self.file = open(os.path.join(out_dir, f"{os.getpid()}.txt"), "a", buffering=1)
        time.sleep(0.0002)
        self.file.write(event.id + "\\n")

cm = CallbackManager(plugins=[SlowWriter()], config={"shutdown_timeout": TIMEOUT_S})

def work(i):
    for _ in range(per_task):
        with cm.event(EventType.LLM):
            pass
    return os.getpid()

if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pids = pool.map(work, range(4), chunksize=1)
    # Pool.__exit__ terminated the workers with SIGTERM while their queues were still full
    print(len(set(pids)), flush=True)
""".replace("TIMEOUT_S", repr(TIMEOUT))


def test_pool_workers_deliver_their_queued_events(tmp_path: Path) -> None:
    per_task = 1000
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    script = write_script(tmp_path, POOL_CHILD)
    child = start_script(script, str(out_dir), str(per_task))
    status = child.wait(timeout=60)
    assert child.stderr is not None
    assert status == 0, child.stderr.read()[-2000:]
    delivered = sum(count_lines(p) for p in out_dir.iterdir())
    print(f"pool: {delivered} of {4 * per_task} delivered")
    assert delivered == 4 * per_task
