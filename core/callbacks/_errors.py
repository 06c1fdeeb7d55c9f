"""Exceptions the host raises to the application (kept apart so importing them is cheap)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A setting is invalid. The message names the key as the user wrote it, where it came from,
    the value (secrets masked) and what was expected."""
