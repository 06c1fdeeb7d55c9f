"""The few environment switches read before (or without) loading the configuration."""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["DISABLED_ENV", "STRICT_ENV", "env_true"]

DISABLED_ENV = "CALLBACKS_DISABLED"
STRICT_ENV = "CALLBACKS_STRICT"
_TRUE = frozenset({"1", "true", "yes", "on"})


def env_true(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """True when the variable ``name`` is set to 1, true, yes or on (any case)."""
    environ = os.environ if environ is None else environ
    return environ.get(name, "").strip().lower() in _TRUE
