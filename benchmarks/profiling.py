"""Where the time of one event pair goes on the caller's thread, by function (cProfile)."""

from __future__ import annotations

import cProfile
import pstats
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .case import Case
from .timing import _compile

__all__ = ["ProfileRow", "profile_case"]


@dataclass
class ProfileRow:
    """One function's own time (cProfile ``tottime``), per event pair."""

    function: str
    calls_per_pair: float
    own_ns_per_pair: float
    """Inflated by cProfile's own overhead; compare rows with each other, not with the timings."""
    share: float


def _name(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    if filename == "~":
        return function
    path = Path(filename)
    return f"{path.parent.name}/{path.name}:{line}({function})"


def profile_case(case: Case, pairs: int, top: int = 12) -> list[ProfileRow]:
    """Profile ``pairs`` event pairs of ``case`` (after a warm-up) and return the top functions
    by own time."""
    with tempfile.TemporaryDirectory() as tmp:
        fixture = case.setup(Path(tmp))
        try:
            batch, _ = _compile(case.stmt, fixture.namespace)
            chunk = min(pairs, fixture.max_batch or pairs)
            fixture.within(lambda: batch(chunk))
            if fixture.flush is not None:
                fixture.flush()
            profiler = cProfile.Profile()
            done = 0
            while done < pairs:
                profiler.enable()
                fixture.within(lambda: batch(chunk))
                profiler.disable()
                done += chunk
                if fixture.flush is not None:
                    fixture.flush()
        finally:
            if fixture.close is not None:
                fixture.close()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values()) or 1.0
    rows = [
        ProfileRow(_name(key), row[1] / done, row[2] / done * 1e9, row[2] / total)
        for key, row in stats.items()
    ]
    rows.sort(key=lambda r: r.own_ns_per_pair, reverse=True)
    return rows[:top]
