"""The ``[wandb]`` settings section: what users configure and how it reaches ``wandb.init``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["WandbSettings"]


class WandbSettings(BaseModel):
    """Settings of the W&B plugin: ``CALLBACKS_WANDB__<KEY>`` or the ``[wandb]`` TOML table."""

    model_config = ConfigDict(extra="forbid")

    project: str | None = Field(
        default=None, description="W&B project (wandb's default when unset)."
    )
    entity: str | None = Field(default=None, description="W&B entity (user or team).")
    run_name: str | None = Field(default=None, description="Display name of the run.")
    tags: list[str] = Field(default_factory=list, description="Run tags.")
    mode: Literal["online", "offline", "disabled"] | None = Field(
        default=None, description="wandb mode; when unset, WANDB_MODE (or wandb's default) applies."
    )
    dir: Path | None = Field(default=None, description="Directory for run files (else WANDB_DIR).")
    log_payloads: Literal["full", "summary"] = Field(
        default="summary",
        description="'summary' clips texts and counts lists; 'full' logs payload values whole.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="W&B API key (else WANDB_API_KEY or `wandb login`)."
    )

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        # Environment variables carry one string: accept "a,b" as well as the JSON list.
        if isinstance(value, str):
            return [tag.strip() for tag in value.split(",") if tag.strip()]
        return value

    def run_config(self) -> dict[str, Any]:
        """The settings as recorded in the run config: JSON values, secrets left out."""
        return self.model_dump(mode="json", exclude={"api_key"})

    def init_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``wandb.init`` other than ``config`` and ``settings``."""
        kwargs: dict[str, Any] = {
            "project": self.project,
            "entity": self.entity,
            "name": self.run_name,
            "tags": list(self.tags) or None,
            "mode": self.mode,
            "dir": str(self.dir) if self.dir is not None else None,
        }
        return {key: value for key, value in kwargs.items() if value is not None}
