"""No-op plugins: the cost of the host itself, with nothing done in the hooks."""

from __future__ import annotations

from callbacks import Event, hookimpl

__all__ = ["NoopBackground", "NoopInline", "NoopRedactor"]


class NoopInline:
    """Implements both generic event hooks and does nothing, on the caller's thread."""

    callbacks_delivery = "inline"

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        """Does nothing."""

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        """Does nothing."""


class NoopBackground(NoopInline):
    """The same, on the plugin's own worker thread."""

    callbacks_delivery = "background"


class NoopRedactor:
    """A redaction hook that keeps every payload as it is: the cost of the hook itself."""

    callbacks_delivery = "inline"

    @hookimpl
    def callbacks_redact(self, payload: object) -> None:
        """Keeps the payload."""
