"""callbacks-finetuning: record LLM calls as OpenAI chat fine-tuning JSONL."""

from .examples import Example, build_example
from .plugin import FineTuningPlugin
from .settings import FineTuningSettings

__all__ = ["Example", "FineTuningPlugin", "FineTuningSettings", "build_example"]
