"""A trace tree as the W&B media value it is logged as, serialized once, here.

W&B stores a trace tree as ``{"_type": "wb_trace_tree", "root_span_dumps": <the root span as a
JSON string>}``. Its ``WBTraceTree`` builds that string on every ``log`` by turning the span
dataclasses into dicts and converting each value through wandb's JSON helpers: thousands of Python
calls per trace. The spans of :mod:`callbacks_wandb.spans` are plain JSON data already, so one
``json.dumps`` gives the same string, and :func:`logged_tree` hands it to wandb as the value it
logs.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wandb.sdk.data_types.trace_tree import WBTraceTree

__all__ = ["dump_span", "logged_tree"]


def dump_span(span: Any) -> str:
    """The span as JSON, formatted as ``WBTraceTree`` formats it. A float that is not finite is
    ``null`` (wandb turns NaN into ``null`` too, but writes infinities as ``Infinity``, which is
    not JSON); a value JSON has no form for is its ``str()``."""
    try:
        return json.dumps(span, skipkeys=True, allow_nan=False, default=_text)
    except ValueError:
        return json.dumps(_finite(span), skipkeys=True, default=_text)


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def logged_tree(span: Any) -> WBTraceTree:
    """A ``WBTraceTree`` that logs ``span`` (see :mod:`callbacks_wandb.spans`) as serialized
    now, instead of walking it again inside ``run.log``."""
    return _serialized_tree_class()(dump_span(span))


@functools.cache
def _serialized_tree_class() -> Callable[[str], WBTraceTree]:
    # Defined on first use: importing wandb takes a second and happens on the plugin's worker.
    from wandb.sdk.data_types.trace_tree import WBTraceTree

    class SerializedTraceTree(WBTraceTree):
        """A ``WBTraceTree`` whose root span is already its JSON text."""

        def __init__(self, root_span_dumps: str) -> None:
            super().__init__(root_span=None)  # type: ignore[arg-type]
            self._root_span_dumps = root_span_dumps

        def to_json(self, run: Any) -> dict[str, Any]:
            return {"_type": self._log_type, "root_span_dumps": self._root_span_dumps}

    return SerializedTraceTree
