"""Times and durations as the CLI and the viewer show them."""

from __future__ import annotations

from datetime import datetime

__all__ = ["format_duration", "format_time"]


def format_time(ns: int | None) -> str:
    """Local date and time to the second."""
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def format_duration(ns: int | None) -> str:
    """``850 µs``, ``12.3 ms``, ``4.56 s``; ``-`` while running."""
    if ns is None:
        return "-"
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"
