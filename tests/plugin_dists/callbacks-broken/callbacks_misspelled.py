"""A plugin that imports fine but implements a hook that does not exist (a typo)."""

from callbacks import hookimpl


class MisspelledPlugin:
    @hookimpl
    def on_llm_strat(self, event) -> None:
        """Meant to be on_llm_start; pluggy's check_pending rejects it."""
