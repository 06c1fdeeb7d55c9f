"""Apply OpenInference's ``TraceConfig`` masking (``OPENINFERENCE_HIDE_*``) to span attributes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from openinference.semconv.trace import SpanAttributes

if TYPE_CHECKING:
    from openinference.instrumentation import TraceConfig

    from .settings import OpenInferenceSettings

__all__ = ["Masker"]

# Inputs that TraceConfig.mask does not know about (they are set by instrumentors through other
# paths) but that carry what the user sent: hidden along with the other inputs.
_EXTRA_INPUT_KEYS = (
    SpanAttributes.LLM_PROMPT_TEMPLATE_VARIABLES,
    SpanAttributes.TOOL_PARAMETERS,
)


class Masker:
    """Masks attributes exactly as OpenInference instrumentations do, from the settings'
    ``hide_*`` options, else the ``OPENINFERENCE_HIDE_*`` environment variables (read once,
    here)."""

    def __init__(self, settings: OpenInferenceSettings | None = None) -> None:
        from openinference.instrumentation import TraceConfig

        known = {f.name for f in dataclasses.fields(TraceConfig)}
        kwargs = settings.trace_config_kwargs() if settings is not None else {}
        chosen: dict[str, Any] = {k: v for k, v in kwargs.items() if k in known}
        self.config: TraceConfig = TraceConfig(**chosen)

    def apply(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes to record: hidden ones removed, redacted ones replaced by
        ``"__REDACTED__"``, lazy (callable) values resolved only when kept."""
        mask = self.config.mask
        hide_inputs = bool(self.config.hide_inputs)
        out: dict[str, Any] = {}
        for key, value in attributes.items():
            if hide_inputs and key in _EXTRA_INPUT_KEYS:
                continue
            masked = mask(key, value)
            if masked is not None:
                out[key] = masked
        return out
