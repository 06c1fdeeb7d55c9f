"""Plugins that the process-delivery tests run in the sidecar (importable there: the sidecar gets
the app's ``sys.path``). Each one writes what it saw to the file its settings name, as JSON."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from callbacks import Event, hookimpl, payloads


def _announce_blocked(out: str) -> None:
    """Tell the test (through the FIFO ``<out>.blocked`` it created) that this hook is running,
    then never return."""
    with open(out + ".blocked", "w") as fifo:
        fifo.write(str(os.getpid()))
    threading.Event().wait()


class SidecarSettings(BaseModel):
    out: str
    tag: str = "default"
    shutdown_s: float = 0.0
    """How long the shutdown hook works before writing (a slow sink finishing its run)."""
    event_s: float = 0.0
    """How long :class:`EndsOnly` works on each event (a slow sink)."""


class SidecarRecorder:
    """Records every event and trace it hears, with payloads read through
    :mod:`callbacks.payloads`; raises on an event whose payload has ``"boom"``; blocks forever
    on one with ``"block"``."""

    callbacks_delivery = "process"
    callbacks_name = "recorder"

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.settings: SidecarSettings | None = None
        self.flushes = 0

    @hookimpl
    def callbacks_settings(self) -> type[BaseModel]:
        return SidecarSettings

    @hookimpl
    def callbacks_configure(self, settings: SidecarSettings) -> None:
        self.settings = settings

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        self.seen.append({"kind": "start", "id": event.id, "type": event.type.value})

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        payload = event.full_payload
        if payload.get("block"):
            _announce_blocked(self._out())
        usage = payloads.usage_of(payload)
        self.seen.append(
            {
                "kind": "end",
                "id": event.id,
                "type": event.type.value,
                "trace_id": event.trace_id,
                "parent_id": event.parent_id,
                "start_id": event.start.id if event.start is not None else None,
                "duration_ns": event.duration_ns,
                "nodes": [[n.id, n.text, n.score] for n in payloads.nodes_of(payload.get("nodes"))],
                "messages": [
                    [m.role, m.content] for m in payloads.messages_of(payload.get("messages"))
                ],
                "completion": payloads.completion_of(payload),
                "usage": [usage.prompt, usage.completion, usage.total] if usage else None,
                "exception": [type(event.exception).__name__, str(event.exception)]
                if event.exception is not None
                else None,
                "n": payload.get("n"),
            }
        )
        if payload.get("boom"):
            raise ValueError("boom")

    @hookimpl
    def on_trace_end(self, trace: Any) -> None:
        self.seen.append(
            {
                "kind": "trace",
                "id": trace.id,
                "name": trace.name,
                "events": trace.event_count,
                "map": trace.trace_map,
            }
        )

    @hookimpl
    def callbacks_flush(self, timeout: float) -> None:
        self.flushes += 1
        self._write("flush")

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        assert self.settings is not None
        time.sleep(self.settings.shutdown_s)  # the work itself, not a synchronisation
        self._write("shutdown")

    def callbacks_stats(self) -> dict[str, Any]:
        return {"seen": len(self.seen), "pid": os.getpid()}

    def _out(self) -> str:
        assert self.settings is not None
        return self.settings.out

    def _write(self, why: str) -> None:
        assert self.settings is not None
        record = {
            "why": why,
            "pid": os.getpid(),
            "tag": self.settings.tag,
            "flushes": self.flushes,
            "seen": self.seen,
            # What the sidecar had to import to read the wire: it must be plain data.
            "foreign_modules": sorted(
                m for m in sys.modules if m.split(".")[0] in ("llama_index", "numpy", "langchain")
            ),
        }
        tmp = self._out() + ".tmp"
        Path(tmp).write_text(json.dumps(record))
        os.replace(tmp, self._out())


class EndsOnly:
    """Hears only event ends (no starts, no traces), so each event is one record on the wire;
    blocks like :class:`SidecarRecorder` on ``"block"``."""

    callbacks_delivery = "process"
    callbacks_name = "ends"

    def __init__(self) -> None:
        self.count = 0
        self.settings: SidecarSettings | None = None

    @hookimpl
    def callbacks_settings(self) -> type[BaseModel]:
        return SidecarSettings

    @hookimpl
    def callbacks_configure(self, settings: SidecarSettings) -> None:
        self.settings = settings

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        assert self.settings is not None
        if event.full_payload.get("block"):
            _announce_blocked(self.settings.out)
        if self.settings.event_s:
            time.sleep(self.settings.event_s)  # the work itself, not a synchronisation
        self.count += 1

    @hookimpl
    def callbacks_flush(self, timeout: float) -> None:
        assert self.settings is not None
        Path(self.settings.out).write_text(json.dumps({"pid": os.getpid(), "count": self.count}))

    def callbacks_stats(self) -> dict[str, Any]:
        return {"count": self.count}
