"""Reference points: the floor (a bare call), the practical limit of any context-tracking tracer
(a contextvar set/reset and two clock reads), and raw pluggy dispatch."""

from __future__ import annotations

import contextvars
import time
from pathlib import Path
from typing import Any

from .case import Case
from .timing import Fixture
from .workload import COMPLETION, MODEL, PROMPT

__all__ = ["CASES"]


def _noop(payload: Any) -> None:
    """The empty function the bare-call reference calls."""


def _bare(tmp: Path) -> Fixture:
    return Fixture({"noop": _noop, "P": {"prompt": PROMPT, "model_name": MODEL}})


def _limit(tmp: Path) -> Fixture:
    var: contextvars.ContextVar[object] = contextvars.ContextVar("bench_parent", default=None)
    return Fixture({"var": var, "clock": time.monotonic_ns, "X": ("trace", "event")})


def _pluggy(tmp: Path) -> Fixture:
    import pluggy

    spec = pluggy.HookspecMarker("callbacks_benchmark")
    impl = pluggy.HookimplMarker("callbacks_benchmark")

    class Spec:
        @spec
        def llm_start(self, payload: Any) -> None:
            """An LLM call starts."""

        @spec
        def llm_end(self, payload: Any) -> None:
            """An LLM call ends."""

    class Plugin:
        @impl
        def llm_start(self, payload: Any) -> None:
            """Does nothing."""

        @impl
        def llm_end(self, payload: Any) -> None:
            """Does nothing."""

    pm = pluggy.PluginManager("callbacks_benchmark")
    pm.add_hookspecs(Spec)
    pm.register(Plugin())
    return Fixture(
        {
            "hook": pm.hook,
            "P": {"prompt": PROMPT, "model_name": MODEL},
            "E": {"completion": COMPLETION},
        }
    )


CASES = [
    Case("bare_call", "bare function call", "reference", "noop(P)", _bare),
    Case(
        "practical_limit",
        "contextvar set/reset + 2 clock reads",
        "reference",
        """
        _s = clock()
        _t = var.set(X)
        var.reset(_t)
        _e = clock()
        """,
        _limit,
    ),
    Case(
        "pluggy_raw",
        "raw pluggy: 2 hook calls, 1 impl",
        "reference",
        """
        hook.llm_start(payload=P)
        hook.llm_end(payload=E)
        """,
        _pluggy,
        requires=("pluggy",),
    ),
]
