"""The ``[finetuning]`` settings section (``CALLBACKS_FINETUNING__<KEY>`` in the environment)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["FineTuningSettings"]


class FineTuningSettings(BaseModel):
    """Where the fine-tuning examples go."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    """JSONL file the examples are appended to (relative to the working directory). Unset
    (the default) or ``""``: examples are kept in memory only and no file is written."""
    max_records: int = Field(default=100_000, ge=0)
    """Examples kept in memory for ``finetuning_events``/``save_finetuning_events``."""

    @field_validator("path", mode="before")
    @classmethod
    def _empty_path_means_no_file(cls, value: object) -> object:
        # TOML has no null and environment values are strings: "" is how users say "no file".
        return None if value == "" else value
