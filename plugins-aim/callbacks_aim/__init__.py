"""Record LLM calls, chunks, retrievals, latencies and token counts in an Aim run."""

from .plugin import AimPlugin
from .settings import AimSettings

__all__ = ["AimPlugin", "AimSettings"]
