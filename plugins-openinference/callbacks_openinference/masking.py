"""Apply OpenInference's ``TraceConfig`` masking (``OPENINFERENCE_HIDE_*``) to span attributes."""

from __future__ import annotations

import dataclasses
import inspect
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


# What TraceConfig.mask does to the values of one key, learnt once per key (see Masker._rule).
_KEEP = 0
_DROP = 1
_REPLACE = 2
_ASK = 3
_RULES_LIMIT = 8192


class _Probe:
    """A value TraceConfig.mask has never seen: tells keeping apart from replacing."""

    __slots__ = ()


class Masker:
    """Masks attributes exactly as OpenInference instrumentations do, from the settings'
    ``hide_*`` options, else the ``OPENINFERENCE_HIDE_*`` environment variables (read once,
    here).

    ``TraceConfig.mask`` decides per attribute key, and for image URLs per value too. What it
    does to a key is learnt the first time the key is seen, by masking probe values of several
    kinds: keep, drop or replace with a constant when they all agree, else ``mask`` is asked
    for every value of that key."""

    def __init__(self, settings: OpenInferenceSettings | None = None) -> None:
        from openinference.instrumentation import TraceConfig

        known = {f.name for f in dataclasses.fields(TraceConfig)}
        kwargs = settings.trace_config_kwargs() if settings is not None else {}
        chosen: dict[str, Any] = {k: v for k, v in kwargs.items() if k in known}
        self.config: TraceConfig = TraceConfig(**chosen)
        self._rules: dict[str, tuple[int, Any]] = {}
        # A probe must never reach a blob uploader (the image branch of mask may upload).
        parameters = inspect.signature(self.config.mask).parameters
        self._probe_options = {"externalize": False} if "externalize" in parameters else {}
        # Probes: values of different kinds, among them a base64 image URL over the size limit,
        # so that a key whose masking depends on its value (image URLs) is never cached.
        limit = self.config.base64_image_max_length
        self._probes: tuple[Any, ...] = (
            _Probe(),
            "probe",
            "data:image/png;base64," + "A" * (limit if isinstance(limit, int) else 0) + "AAAA",
        )

    def apply(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes to record: hidden ones removed, redacted ones replaced by
        ``"__REDACTED__"``, lazy (callable) values resolved only when kept."""
        rules = self._rules
        out: dict[str, Any] = {}
        for key, value in attributes.items():
            rule = rules.get(key)
            if rule is None:
                rule = self._rule(key)
            action = rule[0]
            if action == _KEEP:
                if callable(value):
                    value = value()
                if value is not None:
                    out[key] = value
            elif action == _REPLACE:
                out[key] = rule[1]
            elif action == _ASK:
                masked = self.config.mask(key, value)
                if masked is not None:
                    out[key] = masked
        return out

    def _rule(self, key: str) -> tuple[int, Any]:
        """What ``TraceConfig.mask`` does to any value of ``key``: keep it, drop it, replace it
        with a constant, or (when probes of different kinds disagree) ask it every time."""
        if self.config.hide_inputs and key in _EXTRA_INPUT_KEYS:
            rule: tuple[int, Any] = (_DROP, None)
        else:
            outcomes = {self._outcome(key, probe) for probe in self._probes}
            rule = outcomes.pop() if len(outcomes) == 1 else (_ASK, None)
        if len(self._rules) >= _RULES_LIMIT:
            self._rules.clear()
        self._rules[key] = rule
        return rule

    def _outcome(self, key: str, probe: Any) -> tuple[int, Any]:
        try:
            masked = self.config.mask(key, probe, **self._probe_options)
        except Exception:
            return (_ASK, None)
        if masked is probe:
            return (_KEEP, None)
        if masked is None:
            return (_DROP, None)
        if isinstance(masked, str):
            return (_REPLACE, masked)
        return (_ASK, None)
