"""The ``[aim]`` settings section (``CALLBACKS_AIM__<KEY>`` in the environment)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AimSettings", "resolve_repo"]


class AimSettings(BaseModel):
    """Where and how the Aim run is written."""

    model_config = ConfigDict(extra="forbid")

    repo: str | None = None
    """Aim repository: a directory (its ``.aim`` folder is created if missing) or a remote
    ``aim://host:port`` URL. ``None``: ``.aim`` in the current working directory."""
    experiment: str | None = None
    """The run's experiment; ``None`` is Aim's ``"default"`` experiment."""
    run_params: dict[str, Any] = Field(default_factory=dict)
    """Parameters recorded on the run (``run[key] = value``), e.g. the app's version."""
    system_tracking_interval: float | None = Field(default=None, gt=0)
    """Seconds between CPU/memory/GPU samples; ``None`` turns system tracking off."""
    log_system_params: bool = False
    """Record installed packages, git info and environment variables on the run."""
    capture_terminal_logs: bool = False
    """Copy the process's stdout/stderr into the run."""


def resolve_repo(repo: str | None) -> str:
    """The repository argument for ``aim.Run``: a remote URL as is, else an absolute directory.

    Aim appends ``.aim`` to the directory it is given, so a path that already names a ``.aim``
    folder is taken to mean its parent rather than creating ``.aim/.aim``.
    """
    if repo is not None and "://" in repo:
        return repo
    path = os.path.abspath(os.path.expanduser(repo or os.curdir))
    if os.path.basename(path) == ".aim":
        path = os.path.dirname(path)
    return path
