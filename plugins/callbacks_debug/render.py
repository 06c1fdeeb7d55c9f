"""Render a trace's tree of events as plain text or with rich."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from callbacks import ROOT, Event
from callbacks.events import OUTPUT_KEYS
from callbacks.payloads import summarize

from .store import TraceLog

__all__ = ["event_label", "render_plain", "render_rich", "trace_header"]


def _first_item(
    payload: Mapping[str, Any], limit: int, prefer: frozenset[str] = frozenset()
) -> str:
    """The first non-empty item, taken from the ``prefer`` keys if any has a value."""
    items = [(k, v) for k, v in payload.items() if v is not None]
    preferred = [(k, v) for k, v in items if k in prefer]
    for key, value in preferred or items:
        return f"{key}={summarize(value, limit)!r}"
    return ""


def event_label(start: Event | None, end: Event | None, limit: int) -> str:
    """``type  duration  input → output`` for one event (``…`` while it runs)."""
    first = start or end
    assert first is not None
    parts = [first.type.value]
    if end is not None and end.duration_ns is not None:
        parts.append(f"{end.duration_ns / 1e6:.2f} ms")
    else:
        parts.append("…")
    if start is not None and start.payload:
        parts.append(_first_item(start.payload, limit))
    if end is not None:
        if end.exception is not None:
            parts.append(
                f"✗ {type(end.exception).__name__}: {summarize(str(end.exception), limit)}"
            )
        elif end.payload:
            # An end payload may repeat the inputs (LlamaIndex does): show an output.
            parts.append("→ " + _first_item(end.payload, limit, OUTPUT_KEYS))
    return "  ".join(p for p in parts if p)


def trace_header(log: TraceLog) -> str:
    """``Trace name id  duration  (N events)``."""
    trace = log.trace
    duration = trace.duration_ns if trace is not None else None
    took = f"{duration / 1e6:.2f} ms" if duration is not None else "running"
    count = trace.event_count if trace is not None else len(log.pairs())
    dropped = f", {log.dropped_events} not kept" if log.dropped_events else ""
    return f"Trace {log.name!r} {log.id[:12]}  {took}  ({count} events{dropped})"


def _children(log: TraceLog) -> tuple[dict[str, list[str]], dict[str, list[Event]]]:
    pairs = log.pairs()
    if log.trace is not None:
        return log.trace.trace_map, pairs
    children: dict[str, list[str]] = {}
    for event_id, events in pairs.items():
        children.setdefault(events[0].parent_id, []).append(event_id)
    return children, pairs


def _label(pairs: dict[str, list[Event]], event_id: str, limit: int) -> str:
    events = pairs.get(event_id)
    if not events:
        return f"{event_id} (not kept)"
    start = events[0] if events[0].is_start else None
    end = events[-1] if not events[-1].is_start else None
    return event_label(start, end, limit)


def _fit(line: str, width: int | None) -> str:
    if width is None or len(line) <= width:
        return line
    return line[: max(0, width - 1)] + "…"


def render_plain(log: TraceLog, limit: int, width: int | None = None) -> str:
    """The trace as indented text with tree guides; with ``width``, each longer line is cut to
    it with an ellipsis (a terminal would otherwise wrap or cut it)."""
    children, pairs = _children(log)
    lines = [trace_header(log)]

    def walk(parent: str, prefix: str) -> None:
        kids = children.get(parent, [])
        for i, event_id in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{_label(pairs, event_id, limit)}")
            walk(event_id, prefix + ("   " if last else "│  "))

    walk(ROOT, "")
    return "\n".join(_fit(line, width) for line in lines) + "\n"


def render_rich(log: TraceLog, limit: int, stream: TextIO) -> None:
    """Print the trace to ``stream`` as a rich tree."""
    from rich.console import Console
    from rich.markup import escape
    from rich.text import Text
    from rich.tree import Tree

    def one_line(markup: str) -> Text:
        # One line per event, cut with an ellipsis at the terminal's width.
        text = Text.from_markup(markup, overflow="ellipsis")
        text.no_wrap = True
        return text

    children, pairs = _children(log)
    root = Tree(one_line(f"[bold]{escape(trace_header(log))}[/bold]"))

    def walk(parent: str, node: Tree) -> None:
        for event_id in children.get(parent, []):
            label = escape(_label(pairs, event_id, limit))
            events = pairs.get(event_id) or []
            failed = any(e.exception is not None for e in events)
            style = "red" if failed else "cyan"
            kind, _, rest = label.partition("  ")
            walk(event_id, node.add(one_line(f"[{style}]{kind}[/{style}]  {rest}")))

    walk(ROOT, root)
    Console(file=stream).print(root)
