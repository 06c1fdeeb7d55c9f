"""`callbacks.payloads` readers never consume the application's data: only sequences, sets and
mappings are read; an iterator or generator is recorded as its type name."""

from __future__ import annotations

import pytest

from callbacks import EventPayload, payloads

P = EventPayload


def numbers():
    return (str(i) for i in range(1000))


READERS = [
    ("text_of", lambda g: payloads.text_of(g), "<generator>"),
    ("summarize", lambda g: payloads.summarize(g), "<generator>"),
    ("to_jsonable", lambda g: payloads.to_jsonable({"k": g}), {"k": "<generator>"}),
    ("nodes_of", lambda g: [n.text for n in payloads.nodes_of(g)], ["<generator>"]),
    ("messages_of", lambda g: [m.content for m in payloads.messages_of(g)], ["<generator>"]),
    ("embedding_texts_of", lambda g: payloads.embedding_texts_of({P.CHUNKS: g}), ["<generator>"]),
    ("prompt_of", lambda g: payloads.prompt_of({P.MESSAGES: g}), "user: <generator>"),
    ("completion_of", lambda g: payloads.completion_of({P.RESPONSE: g}), "<generator>"),
    ("usage_of", lambda g: payloads.usage_of({P.RESPONSE: g}), None),
    ("tool_calls_of", lambda g: payloads.tool_calls_of({P.RESPONSE: g}), []),
    (
        "message tool_calls",
        lambda g: payloads.messages_of([{"role": "assistant", "tool_calls": g}])[0].tool_calls,
        ("<generator>",),
    ),
]


@pytest.mark.parametrize(("name", "read", "expected"), READERS, ids=[r[0] for r in READERS])
def test_reader_records_a_generator_by_type_and_leaves_it_whole(name, read, expected) -> None:
    generator = numbers()
    assert read(generator) == expected
    assert len(list(generator)) == 1000


def test_iterators_of_any_kind_are_not_consumed() -> None:
    for iterator in (iter([1, 2, 3]), map(str, [1, 2, 3]), zip("ab", "cd", strict=False)):
        assert payloads.text_of(iterator).startswith("<")
        assert len(list(iterator)) in (2, 3)


def test_sequences_sets_and_mappings_are_still_read() -> None:
    assert [n.text for n in payloads.nodes_of(("a", "b"))] == ["a", "b"]
    assert sorted(n.text for n in payloads.nodes_of({"a", "b"})) == ["a", "b"]
    assert payloads.messages_of([{"role": "user", "content": "hi"}])[0].content == "hi"
    assert payloads.to_jsonable({"k": ("x", {"y"})}) == {"k": ["x", ["y"]]}
