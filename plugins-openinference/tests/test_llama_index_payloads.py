"""LlamaIndex's own payload objects (NodeWithScore, ChatResponse, ToolMetadata) map to the same
attributes as plain dicts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from oi_helpers import memory_manager, plugin_of
from pydantic import BaseModel

from callbacks import EventPayload, EventType

schema = pytest.importorskip("llama_index.core.schema")
llm_types = pytest.importorskip("llama_index.core.base.llms.types")
tools = pytest.importorskip("llama_index.core.tools")


class AddArgs(BaseModel):
    a: int
    b: int


def test_llama_index_objects_become_openinference_attributes() -> None:
    cm = memory_manager()
    node = schema.TextNode(id_="n1", text="Doc one.", metadata={"file": "a.txt"})
    user = llm_types.ChatMessage(role=llm_types.MessageRole.USER, content="hi")
    answer = llm_types.ChatResponse(
        message=llm_types.ChatMessage(role=llm_types.MessageRole.ASSISTANT, content="yo"),
        raw={
            "model": "gpt-x",
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        },
    )
    tool = tools.ToolMetadata(name="add", description="Add.", fn_schema=AddArgs)
    try:
        with cm.as_trace("llama"):
            with cm.event(EventType.RETRIEVE, {EventPayload.QUERY_STR: "q"}) as ev:
                ev.on_end({EventPayload.NODES: [schema.NodeWithScore(node=node, score=0.8)]})
            with cm.event(EventType.LLM, {EventPayload.MESSAGES: [user]}) as ev:
                ev.on_end({EventPayload.RESPONSE: answer})
            with cm.event(
                EventType.FUNCTION_CALL,
                {EventPayload.FUNCTION_CALL: '{"a": 1, "b": 2}', EventPayload.TOOL: tool},
            ) as ev:
                ev.on_end({EventPayload.FUNCTION_OUTPUT: "3"})
        assert cm.flush(timeout=5.0)
        exporter = plugin_of(cm).memory_exporter
        assert exporter is not None
        spans: dict[str, dict[str, Any]] = {
            s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()
        }
    finally:
        cm.shutdown(timeout=2.0)

    retrieve = spans["retrieve"]
    assert retrieve["retrieval.documents.0.document.id"] == "n1"
    assert retrieve["retrieval.documents.0.document.content"] == "Doc one."
    assert retrieve["retrieval.documents.0.document.score"] == 0.8
    assert json.loads(retrieve["retrieval.documents.0.document.metadata"]) == {"file": "a.txt"}
    llm = spans["llm"]
    assert llm["llm.model_name"] == "gpt-x"
    assert llm["llm.input_messages.0.message.role"] == "user"
    assert llm["llm.output_messages.0.message.content"] == "yo"
    assert llm["llm.token_count.total"] == 6
    call = spans["function_call"]
    assert call["tool.name"] == "add"
    assert json.loads(call["tool.parameters"])["required"] == ["a", "b"]
    assert call["input.value"] == '{"a": 1, "b": 2}'
