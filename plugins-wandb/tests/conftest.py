"""Shared fixtures: every W&B file of a test lives under a temporary directory, offline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

WANDB_DIR_VARS = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")


def offline_env(mp: pytest.MonkeyPatch, root: Path) -> None:
    """Point wandb at ``root`` (offline, no key, nothing under ``~``)."""
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.delenv("WANDB_API_KEY", raising=False)
    for var in WANDB_DIR_VARS:
        mp.setenv(var, str(root))
    for var in ("CALLBACKS_CONFIG", "CALLBACKS_PLUGINS", "CALLBACKS_STRICT"):
        mp.delenv(var, raising=False)
    mp.chdir(root)  # no callbacks.toml or pyproject.toml of the repo is picked up


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A function-scoped offline W&B environment under ``tmp_path``."""
    offline_env(monkeypatch, tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def module_wandb_offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A module-scoped offline W&B environment, for tests that share one run."""
    root = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as mp:
        offline_env(mp, root)
        yield root


@pytest.fixture(autouse=True, scope="session")
def _sinks_in_the_test_process() -> Iterator[None]:
    """The sinks ask for process delivery; these tests inspect the plugin object in the test
    process, so they run it here (on a background thread). The sidecar is tested in
    ``test_*_process_delivery.py``, whose configuration in code overrides this variable."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "CALLBACKS_DELIVERY",
            json.dumps(dict.fromkeys(("wandb", "aim", "openinference"), "background")),
        )
        yield
