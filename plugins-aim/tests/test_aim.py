"""callbacks-aim against a real Aim repository under tmp_path, read back as a reader would."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from callbacks import CallbackManager, Event, EventPayload, EventType
from callbacks.encodings import load_encoding
from callbacks.testing import RecordingPlugin
from callbacks_aim import AimPlugin, AimSettings
from callbacks_aim.settings import resolve_repo

# Aim's SQLAlchemy models use APIs deprecated in SQLAlchemy 2.0; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.MovedIn20Warning")

QUESTION = "What does Aim record?"
MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": QUESTION},
]
NODES = [
    {"id": "n1", "text": "Aim records metrics.", "score": 0.91},
    {"id": "n2", "text": "Aim records texts.", "score": 0.42},
]


@dataclass
class Recorded:
    """What the traced pipeline emitted, and the Aim run read back from the repository."""

    capture: RecordingPlugin
    stats: dict[str, Any]
    run: Any
    answer: str

    def text(self, name: str, context: dict[str, str]) -> list[tuple[int, str]]:
        from aim.storage.context import Context

        seq = self.run.get_text_sequence(name, Context(context))
        assert seq is not None, f"no text sequence {name!r} with context {context}"
        steps, (values, *_rest) = seq.data.items_list()
        return [(step, value.data) for step, value in zip(steps, values, strict=True)]

    def metric(self, name: str, context: dict[str, str]) -> list[tuple[int, float]]:
        from aim.storage.context import Context

        seq = self.run.get_metric(name, Context(context))
        assert seq is not None, f"no metric {name!r} with context {context}"
        steps, (values, *_rest) = seq.data.items_list()
        return list(zip(steps, values, strict=True))

    def names(self, kind: str) -> set[str]:
        return {s["name"] for s in self.run.collect_sequence_info((kind,))[kind]}


def ctx(event: Event) -> dict[str, str]:
    """The context of an event's texts: its type only, so sequences stay few."""
    return {"event_type": event.type.value}


def ids(event: Event) -> str:
    """The text that ties a step to its trace and event."""
    return f"trace_id={event.trace_id} event_id={event.id}"


def _pipeline(cm: CallbackManager) -> str:
    """A small RAG query with the payload shapes LlamaIndex and provider SDKs produce."""
    with (
        cm.as_trace("query"),
        cm.event(EventType.QUERY, payload={EventPayload.QUERY_STR: QUESTION}) as query,
    ):
        with cm.event(EventType.CHUNKING, payload={EventPayload.DOCUMENTS: ["doc"]}) as ev:
            ev.on_end(payload={EventPayload.CHUNKS: ["chunk one", "chunk two", "chunk three"]})
        with cm.event(EventType.RETRIEVE, payload={EventPayload.QUERY_STR: QUESTION}) as ev:
            ev.on_end(payload={EventPayload.NODES: NODES})
        with cm.event(
            EventType.LLM,
            payload={EventPayload.MESSAGES: MESSAGES, EventPayload.MODEL_NAME: "stub-1"},
        ) as ev:
            ev.on_end(
                payload={
                    EventPayload.RESPONSE: "Metrics and texts.",
                    EventPayload.USAGE: {"prompt_tokens": 11, "completion_tokens": 7},
                }
            )
        with cm.event(EventType.LLM, payload={EventPayload.PROMPT: "Summarize."}) as ev:
            ev.on_end(payload={EventPayload.COMPLETION: "Done."})
        # Shapes that crashed the reference AimCallback (KeyError / TypeError / ValueError).
        with cm.event(EventType.LLM, payload={EventPayload.PROMPT: "no answer key"}) as ev:
            ev.on_end(payload={})
        with cm.event(EventType.CHUNKING) as ev:
            ev.on_end(payload={EventPayload.CHUNKS: None})
        with cm.event(EventType.RETRIEVE) as ev:
            ev.on_end(payload={EventPayload.NODES: 42, EventPayload.SCORES: "high"})
        with (
            pytest.raises(ValueError),
            cm.event(EventType.FUNCTION_CALL, payload={EventPayload.FUNCTION_CALL: {}}),
        ):
            raise ValueError("tool broke")
        answer = "Metrics and texts."
        query.on_end(payload={EventPayload.RESPONSE: answer})
    return answer


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    repo_dir = tmp_path_factory.mktemp("aim")
    capture = RecordingPlugin()
    cm = CallbackManager(
        plugins=[AimPlugin(), capture],
        load_entrypoints=False,
        config={
            "aim": {
                "repo": str(repo_dir),
                "experiment": "tests",
                "run_params": {"app": {"name": "rag", "version": 2}},
            }
        },
    )
    answer = _pipeline(cm)
    assert cm.flush(timeout=30.0)
    plugin = cm.get_plugin("aim")
    stats = cm.stats()
    cm.shutdown(timeout=30.0)
    run_hash = plugin.recorder.run_hash
    assert run_hash is not None

    repo = Repo.from_path(str(repo_dir))
    RepoIndexManager.get_index_manager(repo).index(run_hash)
    return Recorded(capture, stats, repo.get_run(run_hash), answer)


def test_llm_messages_and_response_read_back_with_their_context(recorded: Recorded) -> None:
    first = recorded.capture.ends(EventType.LLM)[0]
    context = {**ctx(first), "model": "stub-1"}
    assert recorded.text("prompt", context) == [(0, "system: Answer briefly.\nuser: " + QUESTION)]
    assert recorded.text("response", context) == [(0, "Metrics and texts.")]
    assert recorded.text("prompt_event", context) == [(0, ids(first))]


def test_llm_without_model_name_has_unknown_model_context(recorded: Recorded) -> None:
    second = recorded.capture.ends(EventType.LLM)[1]
    context = {**ctx(second), "model": "unknown"}
    assert recorded.text("prompt", context)[0] == (1, "Summarize.")
    assert recorded.text("response", context) == [(1, "Done.")]
    assert recorded.text("prompt_event", context)[0] == (1, ids(second))


def test_llm_without_response_key_records_its_prompt_only(recorded: Recorded) -> None:
    third = recorded.capture.ends(EventType.LLM)[2]
    context = {**ctx(third), "model": "unknown"}
    assert recorded.text("prompt", context)[1] == (2, "no answer key")
    assert [step for step, _ in recorded.text("response", context)] == [1]  # none at step 2


def test_reported_token_usage_is_recorded_as_metrics(recorded: Recorded) -> None:
    context = {"event_type": "llm", "model": "stub-1", "token_source": "provider"}
    assert recorded.metric("prompt_tokens", context) == [(0, 11)]
    assert recorded.metric("completion_tokens", context) == [(0, 7)]
    assert recorded.metric("total_tokens", context) == [(0, 18)]


def test_calls_without_reported_usage_get_tiktoken_estimates(recorded: Recorded) -> None:
    encoding = load_encoding("cl100k_base")  # tiktoken's own encoding, loaded offline

    def n(text: str) -> int:
        return len(encoding.encode(text))

    context = {"event_type": "llm", "model": "unknown", "token_source": "estimate"}
    assert recorded.metric("prompt_tokens", context) == [
        (0, n("Summarize.")),
        (1, n("no answer key")),
    ]
    assert recorded.metric("completion_tokens", context) == [(0, n("Done.")), (1, 0)]


def test_each_chunk_is_a_text_with_increasing_steps(recorded: Recorded) -> None:
    chunking = recorded.capture.ends(EventType.CHUNKING)[0]
    assert recorded.text("chunk_event", ctx(chunking)) == [(0, ids(chunking))]
    assert recorded.text("chunk", ctx(chunking)) == [
        (0, "chunk one"),
        (1, "chunk two"),
        (2, "chunk three"),
    ]


def test_retrieved_texts_and_scores_share_steps(recorded: Recorded) -> None:
    retrieve = recorded.capture.ends(EventType.RETRIEVE)[0]
    assert recorded.text("query", ctx(retrieve)) == [(0, QUESTION)]
    assert recorded.text("retrieved", ctx(retrieve))[:2] == [
        (0, NODES[0]["text"]),
        (1, NODES[1]["text"]),
    ]
    assert recorded.text("retrieved_event", ctx(retrieve))[0] == (0, ids(retrieve))
    assert recorded.metric("retrieval_score", ctx(retrieve)) == [(0, 0.91), (1, 0.42)]


def test_unusual_payload_shapes_are_recorded_without_errors(recorded: Recorded) -> None:
    odd = recorded.capture.ends(EventType.RETRIEVE)[1]
    assert recorded.text("retrieved", ctx(odd))[2] == (2, "42")
    assert recorded.text("retrieved_event", ctx(odd))[1] == (2, ids(odd))
    assert recorded.stats["aim"]["errors"] == 0
    assert recorded.stats["aim"]["dropped"] == 0


def test_latency_of_every_event_type_is_recorded(recorded: Recorded) -> None:
    for event_type in {e.type for e in recorded.capture.ends()}:
        expected = [e.duration_ns / 1e6 for e in recorded.capture.ends(event_type)]
        got = recorded.metric("latency_ms", {"event_type": event_type.value})
        assert [step for step, _ in got] == list(range(len(expected)))
        assert [value for _, value in got] == pytest.approx(expected)


def test_trace_latency_is_recorded(recorded: Recorded) -> None:
    [(step, value)] = recorded.metric("trace_latency_ms", {"trace_name": "query"})
    assert step == 0
    query = recorded.capture.ends(EventType.QUERY)[0]
    assert value >= query.duration_ns / 1e6


def test_failed_event_records_its_error_and_reaches_the_caller(recorded: Recorded) -> None:
    failed = recorded.capture.ends(EventType.FUNCTION_CALL)[0]
    assert recorded.text("error", ctx(failed)) == [(0, "ValueError: tool broke")]
    assert recorded.text("error_event", ctx(failed)) == [(0, ids(failed))]
    assert recorded.answer == "Metrics and texts."


def test_run_has_experiment_params_and_is_closed(recorded: Recorded) -> None:
    assert recorded.run.experiment == "tests"
    assert recorded.run["app"] == {"name": "rag", "version": 2}
    assert recorded.run.end_time is not None
    texts = {"prompt", "response", "chunk", "query", "retrieved", "error"}
    assert recorded.names("texts") == texts | {
        f"{name}_event" for name in texts if name != "response"
    }


def test_unusable_repo_does_not_change_the_app_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file")
    plain = _pipeline(CallbackManager(plugins=[], load_entrypoints=False))
    cm = CallbackManager(
        plugins=[AimPlugin()],
        load_entrypoints=False,
        config={"aim": {"repo": str(blocker / "repo")}},
    )
    with caplog.at_level(logging.WARNING):
        answer = _pipeline(cm)
        cm.flush(timeout=10.0)
        errors = cm.stats()["aim"]["errors"]
        cm.shutdown(timeout=10.0)
    assert answer == plain
    assert errors >= 1
    assert "not-a-dir" in caplog.text or "NotADirectoryError" in caplog.text


def test_settings_forbid_unknown_keys_and_default_to_quiet_tracking() -> None:
    settings = AimSettings()
    assert (settings.repo, settings.experiment, settings.run_params) == (None, None, {})
    assert settings.system_tracking_interval is None
    assert not settings.log_system_params and not settings.capture_terminal_logs
    with pytest.raises(ValidationError):
        AimSettings(repository="x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        AimSettings(system_tracking_interval=0)


def test_repo_resolves_to_an_absolute_directory_holding_dot_aim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_repo(None) == str(tmp_path)
    assert resolve_repo("runs") == str(tmp_path / "runs")
    assert resolve_repo(str(tmp_path / "runs" / ".aim")) == str(tmp_path / "runs")
    assert resolve_repo("aim://127.0.0.1:53800") == "aim://127.0.0.1:53800"


def test_importing_the_plugin_does_not_import_aim() -> None:
    code = "import sys, callbacks_aim; assert 'aim' not in sys.modules, 'aim imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_plugin_is_registered_under_the_callbacks_entry_point_group() -> None:
    from importlib.metadata import entry_points

    [ep] = [ep for ep in entry_points(group="callbacks") if ep.name == "aim"]
    assert ep.load() is AimPlugin


def test_a_local_run_groups_its_commits_and_every_value_reads_back(tmp_path: Path) -> None:
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager
    from aim.sdk.objects.text import Text
    from aim.sdk.run import Run
    from aim.storage.context import Context

    from callbacks_aim.commits import grouped_commits, known_tracker, run_stores

    run = Run(repo=str(tmp_path), system_tracking_interval=None, capture_terminal_logs=False)
    stores = run_stores(run)
    assert len(stores) == 2, "Aim's store layout changed: tracking is no longer grouped"
    assert known_tracker(), "a new Aim release: check its tracker, then widen known_tracker"
    context = {"event_type": "llm"}
    for step in range(3):
        with grouped_commits(stores, new_steps_only=True):
            run.track({"prompt": Text(f"p{step}"), "tokens": step * 10}, step=step, context=context)
            run.track(step / 2, name="latency_ms", step=step, context=context)
    run_hash = run.hash
    run.close()

    repo = Repo.from_path(str(tmp_path))
    RepoIndexManager.get_index_manager(repo).index(run_hash)
    read = repo.get_run(run_hash)
    texts = read.get_text_sequence("prompt", Context(context)).data.items_list()
    assert (texts[0], [t.data for t in texts[1][0]]) == ([0, 1, 2], ["p0", "p1", "p2"])
    tokens = read.get_metric("tokens", Context(context)).data.items_list()
    assert (tokens[0], list(tokens[1][0])) == ([0, 1, 2], [0, 10, 20])
    latency = read.get_metric("latency_ms", Context(context)).data.items_list()
    assert list(latency[1][0]) == [0.0, 0.5, 1.0]
