"""OTLP protobuf encoding of finished spans, written straight to bytes.

:func:`encode_spans` gives the same bytes as OpenTelemetry's
``encode_spans(spans).SerializePartialToString()`` (the OTLP exporter's encoder), without
building a protobuf message per span, attribute and value. It covers what OpenTelemetry's
encoder turns into bytes without logging: anything else (a mapping value, an int outside
int64, a string that is not valid UTF-8, an unknown span kind...) makes it return ``None``,
and the caller encodes that batch with OpenTelemetry's encoder.

Fields go out in field-number order, and a proto3 field holding its default value is left out,
as the protobuf runtime does; members of a ``oneof`` (``AnyValue``) and set sub-messages are
always written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from struct import Struct
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

__all__ = ["encode_spans"]

_FIXED64 = Struct("<Q").pack
_FIXED32 = Struct("<I").pack
_DOUBLE = Struct("<d").pack
_VECTOR_ITEM = Struct("<BBBd").pack
_FLOAT = {float}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT32_MAX = 2**32 - 1
_SMALL = [bytes((i,)) for i in range(128)]

# Span.kind: opentelemetry.proto.trace.v1.Span.SpanKind
_KINDS = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
# Span.flags (fixed32, field 16): SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, + IS_REMOTE_MASK.
_FLAGS_LOCAL = b"\x85\x01" + _FIXED32(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _FIXED32(0x300)


class _Unsupported(Exception):
    """A value this encoder does not write (OpenTelemetry's encoder decides what to do)."""


def _varint(value: int) -> bytes:
    if value < 128:
        return _SMALL[value]
    if value < 16384:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value > 127:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return b"".join((tag, _varint(len(payload)), payload))


def _utf8(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _Unsupported from error


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message (without its own tag and length)."""
    if value is None:
        return b""
    # The order of opentelemetry.exporter.otlp.proto.common._internal._encode_value.
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", _utf8(value))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Unsupported
        return b"\x18" + _varint(value if value >= 0 else value + 2**64)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        if type(value) is tuple and value and set(map(type, value)) == _FLOAT:
            # An embedding vector: each item is values { double_value: x }.
            return _field(b"\x2a", b"".join([_VECTOR_ITEM(10, 9, 0x21, x) for x in value]))
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(v)) for v in value]))
    raise _Unsupported


_KEYS: dict[str, bytes] = {}
_PAIRS: dict[tuple[str, str], bytes] = {}
_CACHE_LIMIT = 4096
_SHORT = 64


def _add_key_value(parts: list[bytes], tag: bytes, key: str, value: Any) -> None:
    """Append one field holding a ``KeyValue``: ``tag`` + length + key + ``AnyValue``. A long
    string goes in as its own piece, copied once, when the whole request is joined."""
    kind = type(value)
    if kind is str and len(value) <= _SHORT:
        # Kinds, mime types, roles, model names...: the same few pairs again and again.
        pair = (key, value)
        encoded = _PAIRS.get(pair)
        if encoded is None:
            if len(_PAIRS) >= _CACHE_LIMIT:
                _PAIRS.clear()
            encoded = _PAIRS[pair] = _field(b"", _key(key) + _field(b"\x12", _any_value(value)))
        parts.append(tag + encoded)
    elif kind is str:
        data = _utf8(value)
        size = len(data)
        size_varint = _varint(size)
        inner = 1 + len(size_varint) + size
        head = _key(key) + b"\x12" + _varint(inner) + b"\x0a" + size_varint
        parts += (tag, _varint(len(head) + size), head, data)
    else:
        parts.append(_field(tag, _key(key) + _field(b"\x12", _any_value(value))))


def _key(key: str) -> bytes:
    encoded = _KEYS.get(key)
    if encoded is None:
        if len(_KEYS) >= _CACHE_LIMIT:
            _KEYS.clear()
        encoded = _KEYS[key] = _field(b"\x0a", _utf8(key)) if key else b""
    return encoded


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
    parts: list[bytes] = []
    if attributes:
        for key, value in attributes.items():
            _add_key_value(parts, tag, key, value)
    return parts


def _count(tag: bytes, count: int) -> bytes:
    if not count:
        return b""
    if count > _UINT32_MAX:
        raise _Unsupported
    return tag + _varint(count)


def _span(span: ReadableSpan) -> list[bytes]:
    """The pieces of one ``Span`` message (without its own tag and length)."""
    context = span.get_span_context()
    if context is None:
        raise _Unsupported
    parts = [
        b"\x0a\x10",
        context.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        context.span_id.to_bytes(8, "big"),
    ]
    trace_state = context.trace_state
    if trace_state is not None:
        text = ",".join([f"{key}={value}" for key, value in trace_state.items()])
        if text:
            parts.append(_field(b"\x1a", _utf8(text)))
    parent = span.parent
    if parent:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_field(b"\x2a", _utf8(span.name)))
    kind = _KINDS.get(span.kind)
    if kind is None:
        raise _Unsupported
    parts.append(kind)
    if span.start_time:
        parts.append(b"\x39" + _FIXED64(span.start_time))
    if span.end_time:
        parts.append(b"\x41" + _FIXED64(span.end_time))
    parts += _attributes(b"\x4a", span.attributes)
    parts.append(_count(b"\x50", span.dropped_attributes))
    for event in span.events:
        parts.append(_field(b"\x5a", _event(event)))
    parts.append(_count(b"\x60", span.dropped_events))
    for link in span.links:
        parts.append(_field(b"\x6a", _link(link)))
    parts.append(_count(b"\x70", span.dropped_links))
    status = span.status
    if status is not None:
        code = status.status_code.value
        message = _field(b"\x12", _utf8(status.description)) if status.description else b""
        parts.append(_field(b"\x7a", message + (b"\x18" + _varint(code) if code else b"")))
    parts.append(_flags(parent))
    return parts


def _flags(context: Any) -> bytes:
    return _FLAGS_REMOTE if context is not None and context.is_remote else _FLAGS_LOCAL


def _link(link: Any) -> bytes:
    context = link.context
    parts = [
        b"\x0a\x10",
        context.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        context.span_id.to_bytes(8, "big"),
        *_attributes(b"\x22", link.attributes),
        _count(b"\x28", link.dropped_attributes),
        # Link.flags is field 6 (fixed32).
        b"\x35" + _flags(context)[2:],
    ]
    return b"".join(parts)


def _event(event: Any) -> bytes:
    parts = [b"\x09" + _FIXED64(event.timestamp)] if event.timestamp else []
    if event.name:
        parts.append(_field(b"\x12", _utf8(event.name)))
    parts += _attributes(b"\x1a", event.attributes)
    parts.append(_count(b"\x20", event.dropped_attributes))
    return b"".join(parts)


def _scope(scope: Any) -> bytes:
    if scope is None:
        return b""
    parts = []
    if scope.name:
        parts.append(_field(b"\x0a", _utf8(scope.name)))
    if scope.version:
        parts.append(_field(b"\x12", _utf8(scope.version)))
    parts += _attributes(b"\x1a", scope.attributes)
    return b"".join(parts)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes | None:
    """The serialized OTLP ``ExportTraceServiceRequest`` of ``spans``, byte for byte what
    OpenTelemetry's encoder gives; ``None`` when a span holds something only OpenTelemetry's
    encoder should decide about."""
    try:
        return _request(spans)
    except _Unsupported:
        return None


def _request(spans: Sequence[ReadableSpan]) -> bytes:
    # Grouped by resource, then scope, in order of first appearance, as OpenTelemetry does
    # (by equality: distinct but equal resources share a group). Pieces are joined once, at the
    # end: a nested message's length is the sum of its pieces' lengths.
    groups: list[tuple[Any, dict[Any, list[bytes]]]] = []
    last_resource: Any = None
    scopes: dict[Any, list[bytes]] = {}
    for span in spans:
        resource = span.resource
        if resource is not last_resource:
            for known, known_scopes in groups:
                if known is resource or known == resource:
                    scopes = known_scopes
                    break
            else:
                scopes = {}
                groups.append((resource, scopes))
            last_resource = resource
        pieces = _span(span)
        encoded = scopes.setdefault(span.instrumentation_scope or None, [])
        encoded += (b"\x12", _varint(sum(map(len, pieces))))
        encoded += pieces
    out: list[bytes] = []
    for resource, resource_scopes in groups:
        parts = [_field(b"\x0a", b"".join(_attributes(b"\x0a", resource.attributes)))]
        for scope, encoded in resource_scopes.items():
            scope_parts = [_field(b"\x0a", _scope(scope))]
            scope_parts += encoded
            schema_url = scope.schema_url if scope is not None else None
            if schema_url:
                scope_parts.append(_field(b"\x1a", _utf8(schema_url)))
            parts += (b"\x12", _varint(sum(map(len, scope_parts))))
            parts += scope_parts
        if resource.schema_url:
            parts.append(_field(b"\x1a", _utf8(resource.schema_url)))
        out += (b"\x0a", _varint(sum(map(len, parts))))
        out += parts
    return b"".join(out)
