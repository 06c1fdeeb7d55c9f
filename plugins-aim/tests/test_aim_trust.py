"""Issue 17's Aim points, read back from the Aim repository after indexing: a cold program's
data lands and its run is closed, sequences stay a bounded set, handled exception events and
failures at every level of a chain are recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from callbacks import CallbackManager, EventPayload, EventType
from callbacks_aim import AimPlugin

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.MovedIn20Warning")

P = EventPayload


def _read(repo_dir: Path, run_hash: str | None = None) -> Any:
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    repo = Repo.from_path(str(repo_dir))
    hashes = repo.list_all_runs()
    if run_hash is None:
        (run_hash,) = hashes
    RepoIndexManager.get_index_manager(repo).index(run_hash)
    return repo.get_run(run_hash)


def _texts(run: Any, name: str, context: dict[str, str]) -> list[tuple[int, str]]:
    from aim.storage.context import Context

    seq = run.get_text_sequence(name, Context(context))
    assert seq is not None, f"no text sequence {name!r} with context {context}"
    steps, (values, *_rest) = seq.data.items_list()
    return [(step, value.data) for step, value in zip(steps, values, strict=True)]


def _sequences(run: Any) -> list[tuple[str, dict[str, Any]]]:
    info = run.collect_sequence_info(("texts", "metric"))
    return [(s["name"], s["context"]) for kind in info.values() for s in kind]


def test_a_short_cold_program_into_a_new_repository_lands_and_closes_its_run(
    tmp_path: Path,
) -> None:
    repo_dir = tmp_path / "new-repo"  # does not exist: Aim creates and migrates it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBACKS_", "WANDB_"))}
    env.update(CALLBACKS_PLUGINS='["aim"]', CALLBACKS_AIM__REPO=str(repo_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "callbacks", "demo", "--questions", "2", "--out", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "stuck" not in proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    run = _read(repo_dir)
    assert run.end_time is not None and not run.active  # closed, not "active" forever
    prompts = [
        step
        for name, context in _sequences(run)
        if name == "prompt"
        for step in _texts(run, name, context)
    ]
    assert len(prompts) == summary["event_counts"]["llm"]
    latencies = run.collect_sequence_info(("metric",))["metric"]
    assert {s["context"]["event_type"] for s in latencies if s["name"] == "latency_ms"} == {
        t for t, n in summary["event_counts"].items() if n
    }


def test_sequences_stay_a_bounded_set_over_many_events(tmp_path: Path) -> None:
    plugin = AimPlugin()
    cm = CallbackManager(plugins=[plugin], config={"aim": {"repo": str(tmp_path)}})
    counts = []
    for _phase in range(2):
        for i in range(300):
            with cm.as_trace("q"):
                with cm.event(EventType.RETRIEVE, {P.QUERY_STR: f"q{i}"}) as retrieve:
                    retrieve.on_end({P.NODES: [{"text": f"n{i}", "score": 0.5}]})
                with cm.event(EventType.LLM, {P.PROMPT: f"p{i}", P.MODEL_NAME: "m"}) as llm:
                    llm.on_end({P.COMPLETION: f"c{i}", P.USAGE: {"prompt_tokens": 2}})
        assert cm.flush(timeout=60)
        counts.append(len(plugin.recorder._run._tracker.sequence_infos))  # type: ignore[union-attr]
    run_hash = plugin.recorder.run_hash
    assert cm.shutdown(timeout=60)
    run = _read(tmp_path, run_hash)
    sequences = _sequences(run)
    # The live run's sequence records do not grow with events (phase 2 adds none) ...
    assert counts[0] == counts[1]
    # ... and the repository holds a small fixed set, each with one step per event.
    assert len(sequences) == len({(n, json.dumps(c, sort_keys=True)) for n, c in sequences}) < 20
    assert len(_texts(run, "prompt", {"event_type": "llm", "model": "m"})) == 600
    ids = _texts(run, "prompt_event", {"event_type": "llm", "model": "m"})
    assert len({text for _, text in ids}) == 600


def test_handled_exception_event_and_failures_up_the_chain_are_recorded(tmp_path: Path) -> None:
    plugin = AimPlugin()
    # trace_wait 0: the start-only exception event is abandoned when its trace block ends.
    cm = CallbackManager(plugins=[plugin], config={"aim": {"repo": str(tmp_path)}, "trace_wait": 0})
    with cm.as_trace("handled"), cm.event(EventType.QUERY, {P.QUERY_STR: "q"}) as query:
        cm.on_event_start(EventType.EXCEPTION, {P.EXCEPTION: KeyError("missing doc")})
        query.on_end({P.RESPONSE: "answered anyway"})
    with pytest.raises(TimeoutError), cm.as_trace("chain"):
        with cm.event(EventType.QUERY, {P.QUERY_STR: "q"}):
            with cm.event(EventType.SYNTHESIZE):
                with cm.event(EventType.LLM, {P.PROMPT: "p"}):
                    raise TimeoutError("provider timed out")
    run_hash = plugin.recorder.run_hash
    assert cm.shutdown(timeout=60)
    run = _read(tmp_path, run_hash or None)
    assert _texts(run, "error", {"event_type": "exception"}) == [(0, "KeyError: 'missing doc'")]
    for event_type in ("llm", "synthesize", "query"):
        texts = [text for _, text in _texts(run, "error", {"event_type": event_type})]
        assert texts == ["TimeoutError: provider timed out"]
