"""Context helpers that tag traces with a session, a user, metadata and tags.

They mirror OpenInference's ``using_session``/``using_user``/... and set the same values in both
places: the callbacks trace attributes (which become ``session.id``, ``user.id``, ``metadata`` and
``tag.tags`` on every span of the trace) and the OpenTelemetry context, so spans made by
OpenInference auto-instrumentors in the same code (OpenAI, LangChain...) carry them too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

__all__ = ["using_attributes", "using_metadata", "using_session", "using_tags", "using_user"]


@contextmanager
def using_attributes(
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
) -> Iterator[None]:
    """Within the block, traces carry these session id, user id, metadata and tags."""
    import callbacks

    with ExitStack() as stack:
        stack.enter_context(
            callbacks.using_attributes(
                session_id=session_id,
                user_id=user_id,
                metadata=dict(metadata) if metadata is not None else None,
                tags=list(tags) if tags is not None else None,
            )
        )
        stack.enter_context(_openinference_context(session_id, user_id, metadata, tags))
        yield


@contextmanager
def _openinference_context(
    session_id: str | None,
    user_id: str | None,
    metadata: Mapping[str, Any] | None,
    tags: Sequence[str] | None,
) -> Iterator[None]:
    from openinference.instrumentation import using_attributes as oi_using_attributes

    kwargs: dict[str, Any] = {}
    if session_id is not None:
        kwargs["session_id"] = session_id
    if user_id is not None:
        kwargs["user_id"] = user_id
    if metadata is not None:
        kwargs["metadata"] = dict(metadata)
    if tags is not None:
        kwargs["tags"] = list(tags)
    with oi_using_attributes(**kwargs):
        yield


def using_session(session_id: str) -> AbstractContextManager[None]:
    """Within the block, traces belong to this session (``session.id``)."""
    return using_attributes(session_id=session_id)


def using_user(user_id: str) -> AbstractContextManager[None]:
    """Within the block, traces belong to this user (``user.id``)."""
    return using_attributes(user_id=user_id)


def using_metadata(metadata: Mapping[str, Any]) -> AbstractContextManager[None]:
    """Within the block, traces carry this metadata (``metadata``, as JSON)."""
    return using_attributes(metadata=metadata)


def using_tags(tags: Sequence[str]) -> AbstractContextManager[None]:
    """Within the block, traces carry these tags (``tag.tags``)."""
    return using_attributes(tags=tags)
