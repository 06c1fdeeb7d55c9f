"""The Aim plugin run in the sidecar process (``delivery = "process"``) records the same texts
and metrics in its repository as when it runs in the application's process."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_aim import _pipeline

from callbacks import CallbackManager
from callbacks_aim import AimPlugin

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.MovedIn20Warning")

_IDS = re.compile(r"(trace_id|event_id)=\S+")


def _record(repo_dir: Path, delivery: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    cm = CallbackManager(
        plugins=[AimPlugin()],
        config={
            "aim": {"repo": str(repo_dir), "experiment": "tests"},
            "delivery": {"aim": delivery},
        },
    )
    assert cm.delivery_mode("aim") == delivery
    for _ in range(2):
        _pipeline(cm)
    assert cm.flush(timeout=60.0)
    stats = cm.stats()["aim"]
    assert cm.shutdown(timeout=60.0)
    repo = Repo.from_path(str(repo_dir))
    run_hash = stats["plugin"]["run_hash"]  # the sidecar's stats cross the boundary
    RepoIndexManager.get_index_manager(repo).index(run_hash)
    run = repo.get_run(run_hash)
    recorded: dict[str, Any] = {}
    for kind in ("texts", "metric"):
        for info in run.collect_sequence_info((kind,))[kind]:
            from aim.storage.context import Context

            context = Context(info["context"])
            if kind == "texts":
                seq = run.get_text_sequence(info["name"], context)
                steps, (values, *_rest) = seq.data.items_list()
                values = [_IDS.sub(r"\1=<id>", v.data) for v in values]
            else:
                seq = run.get_metric(info["name"], context)
                steps, (values, *_rest) = seq.data.items_list()
                if "latency" in info["name"]:
                    values = [v >= 0 for v in values]  # times differ between runs
            key = (kind, info["name"], tuple(sorted(info["context"].items())))
            recorded[repr(key)] = list(zip(steps, values, strict=True))
    return recorded, stats


def test_the_sidecar_records_the_same_sequences_as_the_app(tmp_path: Path) -> None:
    app, _ = _record(tmp_path / "app", "background")
    sidecar, stats = _record(tmp_path / "sidecar", "process")
    assert stats["mode"] == "process"
    assert (stats["errors"], stats["dropped"], stats["lost"]) == (0, 0, 0)
    assert any("texts" in key for key in app) and any("metric" in key for key in app)
    assert sorted(sidecar) == sorted(app)
    for key, values in app.items():
        assert sidecar[key] == values, key
