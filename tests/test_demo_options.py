"""`callbacks demo` options: --quiet, arguments checked with a one-line error (exit 2), and tree
lines cut with an ellipsis at the terminal's width (never wrapped or cut mid-way)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from callbacks import CallbackManager, EventPayload, EventType
from callbacks_debug import DebugPlugin


def demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBACKS_", "WANDB_"))}
    env["CALLBACKS_PLUGINS"] = "tokens,debug,finetuning,demo"  # the sinks are tested elsewhere
    return subprocess.run(
        [sys.executable, "-m", "callbacks", "demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_quiet_prints_only_where_the_outputs_went(tmp_path) -> None:
    loud = demo("--questions", "1", "--out", "loud", cwd=tmp_path)
    quiet = demo("--questions", "1", "--out", "quiet", "--quiet", cwd=tmp_path)
    assert loud.returncode == quiet.returncode == 0, quiet.stderr
    assert "Trace 'query'" in loud.stdout and "Timing per event type" in loud.stdout
    for noisy in ("Trace '", "Timing per event type", "Tokens (tokens plugin)", "callbacks demo:"):
        assert noisy not in quiet.stdout
    assert "Fine-tuning JSONL:" in quiet.stdout and "Summary:" in quiet.stdout
    assert (tmp_path / "quiet" / "finetuning.jsonl").stat().st_size > 0
    assert (tmp_path / "quiet" / "summary.json").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--out", "a-file/out"), "cannot write to --out 'a-file/out'"),
        (("--questions", "0"), "--questions"),
        (("--concurrency", "0"), "--concurrency"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, args, expected) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    done = demo(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("callbacks demo:")]
    assert len(errors) == 1 and expected in errors[0], done.stderr
    assert not (tmp_path / "a-file" / "out").exists()


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def printed_tree(stream: io.StringIO, rich: bool) -> list[str]:
    debug = DebugPlugin(stream=stream)
    cm = CallbackManager([debug], config={"debug": {"print_trace": True, "rich": rich}})
    try:
        with cm.as_trace("long"):
            with cm.event(EventType.QUERY, {EventPayload.QUERY_STR: "why " * 40}) as query:
                with cm.event(EventType.LLM, {EventPayload.PROMPT: "say " * 40}) as llm:
                    llm.on_end({EventPayload.COMPLETION: "yes " * 40})
                query.on_end({EventPayload.RESPONSE: "because " * 20})
        cm.flush()
    finally:
        cm.shutdown()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())  # rich's colours
    return [line for line in plain.splitlines() if line]


@pytest.mark.parametrize("rich", [False, True])
def test_tree_lines_are_cut_with_an_ellipsis_at_the_terminal_width(monkeypatch, rich) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    lines = printed_tree(Terminal(), rich)
    assert len(lines) == 3  # one line per event and the header: nothing wrapped
    assert all(len(line) <= 60 for line in lines), lines
    assert sum(line.endswith("…") for line in lines) >= 2


def test_tree_lines_are_whole_in_a_file_or_pipe(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    lines = printed_tree(io.StringIO(), rich=False)
    assert len(lines) == 3 and max(len(line) for line in lines) > 60
