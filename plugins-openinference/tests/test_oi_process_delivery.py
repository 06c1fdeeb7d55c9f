"""The OpenInference plugin run in the sidecar process (``delivery = "process"``) exports the
same spans to a loopback OTLP receiver as when it runs in the application's process."""

from __future__ import annotations

import re
from typing import Any

from oi_helpers import OTLPReceiver, run_pipeline

from callbacks import CallbackManager
from callbacks_openinference import OpenInferencePlugin


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    return getattr(value, kind)


def _export(receiver: OTLPReceiver, delivery: str) -> tuple[str, list[Any], dict[str, Any]]:
    cm = CallbackManager(
        plugins=[OpenInferencePlugin()],
        config={
            "openinference": {"exporter": "otlp", "endpoint": receiver.url},
            "delivery": {"openinference": delivery},
            "trace_wait": 0,  # the pipeline's never-ended event is abandoned at its trace end
        },
    )
    try:
        assert cm.delivery_mode("openinference") == delivery
        trace_id = run_pipeline(cm)
        assert cm.flush(timeout=30.0)
        assert receiver.wait_for_spans(18, timeout=30.0)
        stats = cm.stats()["openinference"]
    finally:
        cm.shutdown(timeout=30.0)
    return trace_id, receiver.spans(), stats


def _shape(spans: list[Any]) -> list[tuple[Any, ...]]:
    """Each span as (name, parent's name, status, attributes), ids and times left out."""
    by_id = {s.span_id: s for s in spans}
    shaped = []
    for s in spans:
        parent = by_id[s.parent_span_id].name if s.parent_span_id else None
        attributes = {kv.key: _value(kv.value) for kv in s.attributes}
        message = re.sub(r"event \S+ never", "event <id> never", s.status.message)
        shaped.append((s.name, parent, s.status.code, message, sorted(attributes.items())))
    return sorted(shaped, key=repr)


def test_spans_from_the_sidecar_equal_spans_from_the_app() -> None:
    app_receiver, sidecar_receiver = OTLPReceiver(), OTLPReceiver()
    try:
        app_trace, app_spans, _ = _export(app_receiver, "background")
        sidecar_trace, sidecar_spans, stats = _export(sidecar_receiver, "process")
    finally:
        app_receiver.close()
        sidecar_receiver.close()
    assert stats["mode"] == "process" and stats["sidecar"]["pid"]
    assert (stats["errors"], stats["dropped"], stats["lost"]) == (0, 0, 0)
    assert len(sidecar_spans) == len(app_spans) == 18
    assert {s.trace_id.hex() for s in sidecar_spans} == {sidecar_trace}
    assert app_trace != sidecar_trace
    assert _shape(sidecar_spans) == _shape(app_spans)
