"""What the OpenAI and Anthropic instrumentations share, written once: patching resource methods
(and undoing it exactly), one event per request, streams observed in place, failure isolation
and the duplicate guard. Nothing here imports an SDK; each SDK module describes its methods with
a :class:`CallSpec`."""

from ._events import Call, StreamAccumulator
from ._guard import GUARD_NAME, guard_for
from ._patching import SDKS, Instrumentor, instrument_configured
from ._support import error_payload, get, given, instrumentation_failures, parameters, plain
from ._wrapping import CallSpec

__all__ = [
    "GUARD_NAME",
    "SDKS",
    "Call",
    "CallSpec",
    "Instrumentor",
    "StreamAccumulator",
    "error_payload",
    "get",
    "given",
    "guard_for",
    "instrument_configured",
    "instrumentation_failures",
    "parameters",
    "plain",
]
