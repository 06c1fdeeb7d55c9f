"""Hook specifications: the plugin author's manual.

A plugin implements any of these with ``@callbacks.hookimpl`` and is registered through the
``callbacks`` entry-point group (or ``CallbackManager.register``). Implement only what you need:
the host skips building events that nobody listens to.

Every event hook takes one argument, ``event`` (a :class:`callbacks.Event`). For a background
plugin (the default, see ``callbacks_delivery``) hooks run on the plugin's own worker thread, in
the order the events were emitted; for an inline plugin they run on the caller's thread and must be
cheap. Whatever a hook returns is ignored, and whatever it raises is logged and counted, never
passed to the application. An implementation may declare any subset of its spec's arguments.

``docs/plugins.md`` lists, for each event type, the payload keys at its start and at its end,
their shapes, and the :mod:`callbacks.payloads` reader for each.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ._manager import CallbackManager
    from ._trace import Trace
    from .events import Event, EventPhase, EventType

PROJECT_NAME = "callbacks"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks a hook specification of the ``callbacks`` project."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin function or method as an implementation of a ``callbacks`` hook."""


# -- generic event and trace hooks -------------------------------------------------------------


@hookspec
def on_event_start(event: Event) -> None:
    """Any event started. Runs after the type-specific ``on_<type>_start`` of the same plugin."""


@hookspec
def on_event_end(event: Event) -> None:
    """Any event ended (also a failed or abandoned one: see ``event.exception``)."""


@hookspec
def on_trace_start(trace: Trace) -> None:
    """A trace (one query, one agent run...) started. Its events follow."""


@hookspec
def on_trace_end(trace: Trace) -> None:
    """A trace ended. ``trace.trace_map``, counts and durations are final."""


# -- lifecycle hooks ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def callbacks_settings() -> type[BaseModel] | None:
    """Return the pydantic model of this plugin's settings section (``[<name>]`` in TOML,
    ``CALLBACKS_<NAME>__<KEY>`` in the environment). It is validated before any event flows."""


@hookspec
def callbacks_configure(settings: Any, manager: CallbackManager) -> bool | None:
    """Receive this plugin's validated settings (an instance of the model from
    ``callbacks_settings``, or ``None``) and the manager, once, before any event is delivered.
    Return ``False`` when these settings leave the plugin nothing to do (a store with no path):
    it then gets no events and costs the application nothing, while it stays registered (its
    commands, stats and lifecycle hooks still work)."""


@hookspec
def callbacks_flush(timeout: float) -> bool | None:
    """Push out anything buffered. For a background plugin it runs on the worker, after every
    event emitted before ``CallbackManager.flush`` was called. Return ``False`` when something
    could not be pushed out (an export failed, data was lost): ``CallbackManager.flush`` then
    returns False too."""


@hookspec
def callbacks_shutdown(timeout: float) -> None:
    """Flush and release resources (close runs, exporters, files). Called once, at
    ``CallbackManager.shutdown``, at ``unregister`` (before the plugin is removed) or at
    interpreter exit; for a background plugin on its worker, after every queued event."""


@hookspec
def callbacks_after_fork_in_child() -> None:
    """Runs in a child process right after ``os.fork()`` (also a ``multiprocessing`` worker
    started by fork), before anything else there uses the plugin, on the thread that forked.
    Only that thread exists in the child: a lock another thread held at the fork (the plugin's
    worker, say) stays held forever. Re-create your locks here, and drop state that belongs to
    the parent (open files, network clients, runs). The host has already given the plugin a
    fresh queue and worker; traces open at the fork stay the parent's (the child never ends
    them), and the child's own events start traces of their own."""


@hookspec
def callbacks_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add subcommands to the ``callbacks`` command line. ``commands`` is the argparse
    sub-parsers object: call ``commands.add_parser(name, help=...)``, add arguments, and
    ``set_defaults(run=fn)`` where ``fn(args, out) -> int`` writes to the text stream ``out`` and
    returns the exit status. Every installed plugin that imports contributes its commands,
    whether or not the configuration activates it for events."""


@hookspec
def callbacks_redact(
    event_type: EventType, phase: EventPhase, payload: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """Transform every payload before any plugin sees it (PII scrubbing): return the payload
    to hand on, or ``None`` to keep it. Runs on the caller's thread for every event with a
    payload, in registration order (each redactor gets the previous one's result), before
    ``hide_inputs``/``hide_outputs``/``max_payload_chars`` apply. If it raises, the payload's
    values are replaced by ``"<redaction failed>"`` and the error is counted on this plugin.
    When no plugin implements it, events pay nothing for it."""


# -- one start and one end hook per event type ---------------------------------------------------


@hookspec
def on_chunking_start(event: Event) -> None:
    """Start: text is split into chunks."""


@hookspec
def on_chunking_end(event: Event) -> None:
    """End: text is split into chunks."""


@hookspec
def on_node_parsing_start(event: Event) -> None:
    """Start: documents are parsed into nodes."""


@hookspec
def on_node_parsing_end(event: Event) -> None:
    """End: documents are parsed into nodes."""


@hookspec
def on_embedding_start(event: Event) -> None:
    """Start: texts are embedded."""


@hookspec
def on_embedding_end(event: Event) -> None:
    """End: texts are embedded."""


@hookspec
def on_llm_start(event: Event) -> None:
    """Start: an LLM is called."""


@hookspec
def on_llm_end(event: Event) -> None:
    """End: an LLM is called."""


@hookspec
def on_query_start(event: Event) -> None:
    """Start: a query runs end to end."""


@hookspec
def on_query_end(event: Event) -> None:
    """End: a query runs end to end."""


@hookspec
def on_retrieve_start(event: Event) -> None:
    """Start: nodes are retrieved for a query."""


@hookspec
def on_retrieve_end(event: Event) -> None:
    """End: nodes are retrieved for a query."""


@hookspec
def on_synthesize_start(event: Event) -> None:
    """Start: a response is synthesized from nodes."""


@hookspec
def on_synthesize_end(event: Event) -> None:
    """End: a response is synthesized from nodes."""


@hookspec
def on_tree_start(event: Event) -> None:
    """Start: a tree summary is built."""


@hookspec
def on_tree_end(event: Event) -> None:
    """End: a tree summary is built."""


@hookspec
def on_sub_question_start(event: Event) -> None:
    """Start: a sub-question is generated and answered."""


@hookspec
def on_sub_question_end(event: Event) -> None:
    """End: a sub-question is generated and answered."""


@hookspec
def on_templating_start(event: Event) -> None:
    """Start: a prompt template is formatted."""


@hookspec
def on_templating_end(event: Event) -> None:
    """End: a prompt template is formatted."""


@hookspec
def on_function_call_start(event: Event) -> None:
    """Start: a tool (function) is called."""


@hookspec
def on_function_call_end(event: Event) -> None:
    """End: a tool (function) is called."""


@hookspec
def on_reranking_start(event: Event) -> None:
    """Start: retrieved nodes are reranked."""


@hookspec
def on_reranking_end(event: Event) -> None:
    """End: retrieved nodes are reranked."""


@hookspec
def on_exception_start(event: Event) -> None:
    """Start: an exception is reported as an event."""


@hookspec
def on_exception_end(event: Event) -> None:
    """End: an exception is reported as an event."""


@hookspec
def on_agent_step_start(event: Event) -> None:
    """Start: an agent takes a step."""


@hookspec
def on_agent_step_end(event: Event) -> None:
    """End: an agent takes a step."""


@hookspec
def on_chain_start(event: Event) -> None:
    """Start: a generic step (a chain, a graph node) that is none of the other types."""


@hookspec
def on_chain_end(event: Event) -> None:
    """End: a generic step (a chain, a graph node) that is none of the other types."""
