"""The ``finetuning`` plugin: records every LLM call as an OpenAI chat fine-tuning example."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from callbacks import Event, hookimpl

from .examples import Example, build_example, iter_lines
from .settings import FineTuningSettings
from .writer import LineWriter

if TYPE_CHECKING:
    from callbacks import CallbackManager

__all__ = ["FineTuningPlugin"]

logger = logging.getLogger(__name__)


class FineTuningPlugin:
    """LlamaIndex's OpenAIFineTuningHandler as a plugin. Each LLM call (chat or completion
    style, with tools and tool calls when used) becomes one ``{"messages": [...]}`` line,
    appended to ``path`` by the plugin's worker. Calls with no completion are skipped and
    counted in :attr:`skipped_calls`."""

    callbacks_name = "finetuning"
    callbacks_delivery = "background"

    def __init__(self) -> None:
        self._settings = FineTuningSettings()
        self._manager: CallbackManager | None = None
        self._lock = threading.Lock()
        self._examples = deque[Example](maxlen=self._settings.max_records)
        self._writer = _writer_for(self._settings)
        self._skipped = 0

    # -- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def callbacks_settings(self) -> type[FineTuningSettings]:
        """The ``[finetuning]`` section's model."""
        return FineTuningSettings

    @hookimpl
    def callbacks_configure(
        self, settings: FineTuningSettings | None, manager: CallbackManager
    ) -> None:
        """Keep the settings, and the manager used to flush before reading."""
        if settings is not None:
            self._settings = settings
            self._examples = deque(maxlen=settings.max_records)
            self._writer = _writer_for(settings)
        self._manager = manager

    @hookimpl
    def callbacks_after_fork_in_child(self) -> None:
        """A lock that another thread held at the fork stays held in the child: start afresh."""
        self._lock = threading.Lock()

    @hookimpl
    def on_llm_end(self, event: Event) -> None:
        """Build the example and append it to the file."""
        example = build_example(event.full_payload) if event.exception is None else None
        if example is None:
            with self._lock:
                self._skipped += 1
            return
        with self._lock:
            self._examples.append(example)
        if self._writer is not None:
            self._writer.write(next(iter(iter_lines([example]))))

    @hookimpl
    def callbacks_flush(self, timeout: float) -> None:
        """Lines are written whole as they come; nothing is buffered."""

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        """Close the file."""
        if self._writer is not None:
            self._writer.close()

    # -- reading -------------------------------------------------------------------------------

    def _sync(self) -> None:
        if self._manager is not None:
            self._manager.flush(plugin=self)

    @property
    def path(self) -> Path | None:
        """The JSONL file examples are appended to, or ``None`` when file writing is off."""
        return self._writer.path if self._writer is not None else None

    @property
    def finetuning_events(self) -> list[Example]:
        """The recorded examples (the last ``max_records``), oldest first."""
        self._sync()
        with self._lock:
            return [json.loads(json.dumps(e)) for e in self._examples]

    @property
    def skipped_calls(self) -> int:
        """LLM calls not recorded because they had no completion (or failed)."""
        self._sync()
        return self._skipped

    def get_finetuning_events(self) -> list[Example]:
        """Same as :attr:`finetuning_events` (LlamaIndex's name)."""
        return self.finetuning_events

    def save_finetuning_events(self, path: str | os.PathLike[str]) -> int:
        """Write every recorded example to ``path`` (replacing it); returns how many."""
        self._sync()
        with self._lock:
            examples = list(self._examples)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.writelines(iter_lines(examples))
        logger.info("wrote %d fine-tuning examples to %s", len(examples), target)
        return len(examples)


def _writer_for(settings: FineTuningSettings) -> LineWriter | None:
    return LineWriter(settings.path) if settings.path is not None else None
