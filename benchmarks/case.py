"""A benchmark case: one start+end event pair of some framework, and how to set it up."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .timing import Fixture

__all__ = ["Case", "unavailable"]


@dataclass(frozen=True)
class Case:
    """One row of the results table."""

    key: str
    """Stable identifier (used in the JSON output and by the smoke test)."""
    label: str
    group: str
    """``reference``, ``callbacks`` or ``peer``."""
    stmt: str
    """One event pair, as Python source run with the fixture's namespace as globals."""
    setup: Callable[[Path], Fixture]
    """Builds the fixture; gets a private temporary directory."""
    requires: tuple[str, ...] = ()
    """``module`` or ``module:attribute`` names that must import, else the case is skipped."""
    note: str = ""
    heavy: bool = False
    """Its background work per event is slow: time fewer pairs so the drains stay short."""


def unavailable(case: Case) -> str | None:
    """Why ``case`` cannot run here (a required name fails to import), or ``None``."""
    for name in case.requires:
        module, _, attribute = name.partition(":")
        try:
            loaded = importlib.import_module(module)
            if attribute:
                getattr(loaded, attribute)
        except Exception as error:  # an ImportError, or a half-written plugin failing to import
            return f"{name} not importable ({type(error).__name__}: {error})"
    return None
