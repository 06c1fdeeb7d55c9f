"""using_session / using_user / using_metadata / using_tags / using_attributes."""

from __future__ import annotations

import json

from oi_helpers import memory_manager, plugin_of
from openinference.instrumentation import get_attributes_from_context

from callbacks import EventPayload, EventType
from callbacks_openinference import (
    using_attributes,
    using_metadata,
    using_session,
    using_tags,
    using_user,
)


def test_helpers_tag_every_span_of_the_trace() -> None:
    cm = memory_manager()
    try:
        with using_session("sess"), using_user("user"), using_metadata({"a": 1}), using_tags(["x"]):
            with using_metadata({"b": 2}):
                with cm.as_trace("tagged"):
                    with cm.event(EventType.QUERY, {EventPayload.QUERY_STR: "q"}):
                        pass
        with cm.as_trace("untagged"):
            pass
        assert cm.flush(timeout=5.0)
        exporter = plugin_of(cm).memory_exporter
        assert exporter is not None
        spans = {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}
    finally:
        cm.shutdown(timeout=2.0)
    for name in ("query",):  # the trace's one top-level event is its root span
        assert spans[name]["session.id"] == "sess"
        assert spans[name]["user.id"] == "user"
        assert json.loads(spans[name]["metadata"]) == {"a": 1, "b": 2}
        assert spans[name]["tag.tags"] == ("x",)
    assert "session.id" not in spans["untagged"]


def test_helpers_also_set_the_openinference_context_for_auto_instrumentors() -> None:
    with using_attributes(session_id="s", user_id="u", metadata={"k": "v"}, tags=["t"]):
        inside = dict(get_attributes_from_context())
    assert inside["session.id"] == "s"
    assert inside["user.id"] == "u"
    assert json.loads(str(inside["metadata"])) == {"k": "v"}
    assert tuple(inside["tag.tags"]) == ("t",)
    assert "session.id" not in dict(get_attributes_from_context())
