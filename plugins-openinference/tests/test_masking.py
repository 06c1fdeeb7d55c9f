"""Each OPENINFERENCE_HIDE_* variable hides exactly what it names, and nothing else."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from oi_helpers import memory_manager, plugin_of, run_pipeline

from callbacks_openinference.settings import TRACE_CONFIG_FIELDS

REDACTED = "__REDACTED__"
Rule = Callable[[str], "str | None"]  # key -> "drop", "redact" or None (untouched)


@pytest.fixture(autouse=True)
def _clean_openinference_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPENINFERENCE_"):
            monkeypatch.delenv(name)


def _spans_attributes(**config: Any) -> dict[tuple[str, int], dict[str, Any]]:
    """``{(span name, n-th of that name): attributes}`` of one pipeline run."""
    cm = memory_manager(**config)
    try:
        run_pipeline(cm)
        assert cm.flush(timeout=5.0)
        exporter = plugin_of(cm).memory_exporter
        assert exporter is not None
        spans = sorted(exporter.get_finished_spans(), key=lambda s: (s.name, s.start_time))
    finally:
        cm.shutdown(timeout=5.0)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for span in spans:
        index = sum(1 for name, _ in out if name == span.name)
        out[(span.name, index)] = dict(span.attributes or {})
    return out


@pytest.fixture(scope="module")
def baseline() -> dict[tuple[str, int], dict[str, Any]]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("OPENINFERENCE_")}
    try:
        return _spans_attributes()
    finally:
        os.environ.update(saved)


def _input_rule(key: str) -> str | None:
    if key == "input.value" or key == "reranker.query":
        return "redact"
    if key == "input.mime_type" or key.startswith(
        ("llm.input_messages.", "reranker.input_documents.", "llm.tools.")
    ):
        return "drop"
    if key in ("llm.prompt_template.variables", "tool.parameters"):
        return "drop"
    return None


def _output_rule(key: str) -> str | None:
    if key == "output.value":
        return "redact"
    if key.startswith("retrieval.documents.") and key.endswith(
        (".document.content", ".document.metadata")
    ):
        return "redact"
    if key == "output.mime_type" or key.startswith(
        ("llm.output_messages.", "reranker.output_documents.")
    ):
        return "drop"
    return None


RULES: dict[str, Rule] = {
    "OPENINFERENCE_HIDE_INPUTS": _input_rule,
    "OPENINFERENCE_HIDE_OUTPUTS": _output_rule,
    "OPENINFERENCE_HIDE_INPUT_MESSAGES": lambda k: (
        "drop" if k.startswith("llm.input_messages.") else None
    ),
    "OPENINFERENCE_HIDE_OUTPUT_MESSAGES": lambda k: (
        "drop" if k.startswith("llm.output_messages.") else None
    ),
    "OPENINFERENCE_HIDE_INPUT_TEXT": lambda k: (
        "redact" if k.startswith("llm.input_messages.") and k.endswith(".message.content") else None
    ),
    "OPENINFERENCE_HIDE_OUTPUT_TEXT": lambda k: (
        "redact"
        if k.startswith("llm.output_messages.") and k.endswith(".message.content")
        else None
    ),
    "OPENINFERENCE_HIDE_EMBEDDING_VECTORS": lambda k: (
        "redact"
        if k.startswith("embedding.embeddings.") and k.endswith(".embedding.vector")
        else None
    ),
    "OPENINFERENCE_HIDE_EMBEDDINGS_TEXT": lambda k: (
        "redact"
        if k.startswith("embedding.embeddings.") and k.endswith(".embedding.text")
        else None
    ),
    "OPENINFERENCE_HIDE_LLM_INVOCATION_PARAMETERS": lambda k: (
        "drop" if k == "llm.invocation_parameters" else None
    ),
}


@pytest.mark.parametrize("variable", sorted(RULES))
def test_env_var_hides_exactly_what_it_names(
    variable: str, baseline: dict[tuple[str, int], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "true")
    masked = _spans_attributes()
    rule = RULES[variable]
    assert masked.keys() == baseline.keys()
    affected = 0
    for span_key, attributes in baseline.items():
        for key, value in attributes.items():
            action = rule(key)
            if action == "drop":
                assert key not in masked[span_key], (span_key, key)
            elif action == "redact":
                assert masked[span_key][key] == REDACTED, (span_key, key)
            else:
                assert masked[span_key][key] == value, (span_key, key)
            affected += action is not None
        assert set(masked[span_key]) <= set(attributes), span_key
    assert affected > 0  # the pipeline exercises what this variable hides


def test_settings_mask_like_the_env_var(baseline: dict[tuple[str, int], dict[str, Any]]) -> None:
    masked = _spans_attributes(hide_outputs=True)
    assert masked[("llm", 0)]["output.value"] == REDACTED
    assert "llm.output_messages.0.message.content" not in masked[("llm", 0)]
    assert masked[("llm", 0)]["input.value"] == baseline[("llm", 0)]["input.value"]


def test_setting_overrides_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENINFERENCE_HIDE_INPUTS", "true")
    masked = _spans_attributes(hide_inputs=False)
    assert masked[("query", 0)]["input.value"] == "What is one?"


def _image_url_keys() -> list[str]:
    from openinference.semconv.trace import (
        ImageAttributes,
        MessageAttributes,
        MessageContentAttributes,
        SpanAttributes,
    )

    image = f"{MessageContentAttributes.MESSAGE_CONTENT_IMAGE}.{ImageAttributes.IMAGE_URL}"
    return [
        f"{messages}.0.{MessageAttributes.MESSAGE_CONTENTS}.1.{image}"
        for messages in (SpanAttributes.LLM_INPUT_MESSAGES, SpanAttributes.LLM_OUTPUT_MESSAGES)
    ]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"hide_inputs": True},
        {"hide_outputs": True},
        {"hide_input_images": True},
        {"base64_image_max_length": 40},
        {name: True for name in TRACE_CONFIG_FIELDS if name.startswith("hide_")},
    ],
    ids=repr,
)
def test_masker_gives_what_trace_config_mask_gives(
    options: dict[str, Any], baseline: dict[tuple[str, int], dict[str, Any]]
) -> None:
    from openinference.instrumentation import TraceConfig

    from callbacks_openinference.masking import Masker
    from callbacks_openinference.settings import OpenInferenceSettings

    settings = OpenInferenceSettings(**options)
    masker = Masker(settings)
    config = TraceConfig(**settings.trace_config_kwargs())
    keys = sorted({key for attributes in baseline.values() for key in attributes})
    keys += _image_url_keys()
    image = "data:image/png;base64," + "iVBORw0KGgo" * 8
    values: list[Any] = ["plain text", image, image[:30], 7, (0.5, 1.5), None]
    for value in values * 2:  # the second time through, from what the masker learnt
        expected = {}
        for key in keys:
            masked = config.mask(key, value, externalize=True)
            if masked is not None and not (
                config.hide_inputs and key in ("llm.prompt_template.variables", "tool.parameters")
            ):
                expected[key] = masked
        assert masker.apply(dict.fromkeys(keys, value)) == expected, value
