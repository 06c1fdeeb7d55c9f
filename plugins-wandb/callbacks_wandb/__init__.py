"""callbacks-wandb: log traces, LLM-call metrics and a table of LLM calls to Weights & Biases."""

from .plugin import WandbPlugin
from .settings import WandbSettings

__all__ = ["WandbPlugin", "WandbSettings"]
