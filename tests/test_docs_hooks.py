"""docs/plugins.md documents every hook, every event type's payload and every payload key."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from callbacks import EventPayload, EventType, hookspecs, payloads

DOCS = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
HOOKSPECS = sorted(
    name
    for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")
)
READERS = set(payloads.__all__)


def _section(heading: str) -> str:
    """The text under a ``### heading`` up to the next heading of level 2 or 3."""
    match = re.search(rf"^### {re.escape(heading)}\n(.*?)(?=^##)", DOCS, re.M | re.S)
    assert match is not None, f"docs/plugins.md has no section '### {heading}'"
    return match.group(1)


def test_the_hookspecs_are_the_ones_the_docs_are_checked_against() -> None:
    # Guards the collection above: 15 types x 2 phases, 4 generic, 7 lifecycle (with redact
    # and after-fork).
    assert len(HOOKSPECS) == 2 * len(EventType) + 4 + 7


@pytest.mark.parametrize("hook", HOOKSPECS)
def test_every_hookspec_is_documented_with_its_arguments(hook: str) -> None:
    arguments = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"`{hook}({arguments})`" in DOCS


def test_callbacks_stats_is_documented() -> None:
    assert "callbacks_stats" in _section("`callbacks_stats()`")


@pytest.mark.parametrize("event_type", list(EventType), ids=lambda t: t.value)
def test_every_event_type_documents_its_start_and_end_payload(event_type: EventType) -> None:
    text = _section(f"`{event_type.value}`")
    assert f"`on_{event_type.value}_start(event)`" in text
    assert f"`on_{event_type.value}_end(event)`" in text
    start = re.search(r"^- Start: (.*?)(?=^- End: )", text, re.M | re.S)
    end = re.search(r"^- End: (.*)", text, re.M | re.S)
    assert start is not None and end is not None
    keys = {p.value for p in EventPayload}
    for phase in (start.group(1), end.group(1)):
        named = set(re.findall(r"`([a-z_]+)`", phase))
        assert named & keys or "no payload" in phase or "no end payload" in phase
        assert named <= keys | READERS | {"traced"}, named - keys - READERS


@pytest.mark.parametrize("key", list(EventPayload), ids=lambda k: k.name)
def test_every_payload_key_has_a_row_with_its_shape_and_reader(key: EventPayload) -> None:
    row = re.search(rf"^\| `{key.name}` \| `{key.value}` \| (.+?) \| (.+?) \|$", DOCS, re.M)
    assert row is not None, f"no row for EventPayload.{key.name}"
    shape, reader = row.groups()
    assert shape.strip()
    named = set(re.findall(r"`([a-z_]+)[`(]", reader))
    assert named <= READERS, named - READERS
    assert named or reader.startswith("(plain"), "name a reader, or say the value is plain"
