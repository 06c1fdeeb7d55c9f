"""The peers, each doing the same job as one ``callbacks`` event pair the way its users do it:
LlamaIndex's CallbackManager and its instrumentation dispatcher, the OpenTelemetry SDK, and
LangChain's CallbackManager. Each library is imported only when its case runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .case import Case
from .timing import Fixture
from .workload import COMPLETION, MODEL, PROMPT, QUESTION

__all__ = ["CASES"]

_FLUSH_TIMEOUT_MS = 120_000


# -- LlamaIndex CallbackManager --------------------------------------------------------------


def _llama_cm(handlers: int) -> Callable[[Path], Fixture]:
    def setup(tmp: Path) -> Fixture:
        from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
        from llama_index.core.callbacks.base_handler import BaseCallbackHandler

        class NoopHandler(BaseCallbackHandler):
            """A handler with empty methods."""

            def __init__(self) -> None:
                super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])

            def on_event_start(
                self,
                event_type: Any,
                payload: Any = None,
                event_id: str = "",
                parent_id: str = "",
                **kwargs: Any,
            ) -> str:
                return event_id

            def on_event_end(
                self, event_type: Any, payload: Any = None, event_id: str = "", **kwargs: Any
            ) -> None:
                pass

            def start_trace(self, trace_id: str | None = None) -> None:
                pass

            def end_trace(self, trace_id: str | None = None, trace_map: Any = None) -> None:
                pass

        cm = CallbackManager([NoopHandler() for _ in range(handlers)])

        def within(fn: Callable[[], Any]) -> Any:
            with cm.as_trace("benchmark"):
                return fn()

        return Fixture(
            {
                "cm": cm,
                "LLM": CBEventType.LLM,
                "P": {EventPayload.PROMPT: PROMPT, EventPayload.MODEL_NAME: MODEL},
                "E": {EventPayload.COMPLETION: COMPLETION},
            },
            within=within,
        )

    return setup


_LLAMA_CM_PAIR = """
with cm.event(LLM, payload=P) as ev:
    ev.on_end(payload=E)
"""


# -- LlamaIndex instrumentation --------------------------------------------------------------


def _llama_instrumentation(tmp: Path) -> Fixture:
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events import BaseEvent

    class BenchLLMStart(BaseEvent):
        """An LLM call starts."""

        prompt: str
        model_name: str

        @classmethod
        def class_name(cls) -> str:
            return "BenchLLMStart"

    class BenchLLMEnd(BaseEvent):
        """An LLM call ends."""

        completion: str

        @classmethod
        def class_name(cls) -> str:
            return "BenchLLMEnd"

    dispatcher = get_dispatcher("callbacks_benchmark")

    @dispatcher.span  # type: ignore[misc]
    def llm_call(prompt: str, model: str) -> str:
        dispatcher.event(BenchLLMStart(prompt=prompt, model_name=model))
        dispatcher.event(BenchLLMEnd(completion=COMPLETION))
        return COMPLETION

    @dispatcher.span  # type: ignore[misc]
    def query(fn: Callable[[], Any]) -> Any:
        return fn()

    return Fixture({"llm_call": llm_call, "PROMPT": PROMPT, "MODEL": MODEL}, within=query)


# -- OpenTelemetry SDK -----------------------------------------------------------------------


def _otel(processor: str) -> Callable[[Path], Fixture]:
    def setup(tmp: Path) -> Fixture:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class NoopExporter(SpanExporter):
            """Accepts every span and does nothing with it."""

            def export(self, spans: Sequence[Any]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

            def shutdown(self) -> None:
                pass

        provider = TracerProvider()
        max_batch = None
        if processor == "simple":
            provider.add_span_processor(SimpleSpanProcessor(NoopExporter()))
        elif processor == "batch":
            bsp = BatchSpanProcessor(NoopExporter())
            provider.add_span_processor(bsp)
            # Its queue (2048 spans by default) drops silently when full; stay well below it.
            max_batch = 1024
        tracer = provider.get_tracer("callbacks_benchmark")

        def within(fn: Callable[[], Any]) -> Any:
            with tracer.start_as_current_span("query"):
                return fn()

        def flush() -> None:
            if not provider.force_flush(_FLUSH_TIMEOUT_MS):
                raise RuntimeError("OpenTelemetry force_flush timed out")

        return Fixture(
            {
                "tracer": tracer,
                "P": {"llm.input": PROMPT, "llm.model_name": MODEL},
                "OUTPUT": "llm.output",
                "COMPLETION": COMPLETION,
            },
            within=within,
            flush=flush if processor == "batch" else None,
            close=provider.shutdown,
            max_batch=max_batch,
        )

    return setup


_OTEL_PAIR = """
with tracer.start_as_current_span("llm", attributes=P) as span:
    span.set_attribute(OUTPUT, COMPLETION)
"""


# -- LangChain -------------------------------------------------------------------------------


def _langchain(tmp: Path) -> Fixture:
    from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
    from langchain_core.outputs import Generation, LLMResult

    class NoopHandler(BaseCallbackHandler):
        """A handler with empty LLM methods."""

        def on_llm_start(self, serialized: Any, prompts: Any, **kwargs: Any) -> None:
            pass

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            pass

    root = CallbackManager.configure(inheritable_callbacks=[NoopHandler()])
    params = {"model_name": MODEL, "temperature": 0.0, "_type": "fake", "stop": None}
    namespace: dict[str, Any] = {
        "configure": CallbackManager.configure,
        "SERIALIZED": {"lc": 1, "type": "not_implemented", "id": ["bench", "FakeLLM"]},
        "PROMPTS": [PROMPT],
        "PARAMS": params,
        "OPTIONS": {"stop": None},
        # What BaseLLM.generate hands to on_llm_end: one flattened result per prompt.
        "RESULT": LLMResult(generations=[[Generation(text=COMPLETION)]]).flatten()[0],
    }

    def within(fn: Callable[[], Any]) -> Any:
        chain = root.on_chain_start({"name": "RetrievalQA"}, {"question": QUESTION})
        namespace["child"] = chain.get_child()
        try:
            return fn()
        finally:
            chain.on_chain_end({"answer": COMPLETION})

    return Fixture(namespace, within=within)


# As BaseLLM.generate does it: configure a manager from the parent's, start the run, end it.
_LANGCHAIN_PAIR = """
_run = configure(child, None, False, None, None, None, None).on_llm_start(
    SERIALIZED, PROMPTS, invocation_params=PARAMS, options=OPTIONS, name=None, batch_size=1
)[0]
_run.on_llm_end(RESULT)
"""


CASES = [
    Case(
        "llamaindex_cm_0",
        "LlamaIndex CallbackManager, 0 handlers",
        "peer",
        _LLAMA_CM_PAIR,
        _llama_cm(0),
        requires=("llama_index.core",),
    ),
    Case(
        "llamaindex_cm_1",
        "LlamaIndex CallbackManager, 1 no-op handler",
        "peer",
        _LLAMA_CM_PAIR,
        _llama_cm(1),
        requires=("llama_index.core",),
    ),
    Case(
        "llamaindex_instrumentation",
        "LlamaIndex instrumentation: span + 2 events",
        "peer",
        "llm_call(PROMPT, MODEL)",
        _llama_instrumentation,
        requires=("llama_index.core",),
    ),
    Case(
        "otel_none",
        "OpenTelemetry SDK span, no processor",
        "peer",
        _OTEL_PAIR,
        _otel("none"),
        requires=("opentelemetry.sdk.trace",),
    ),
    Case(
        "otel_simple",
        "OpenTelemetry SDK span, SimpleSpanProcessor",
        "peer",
        _OTEL_PAIR,
        _otel("simple"),
        requires=("opentelemetry.sdk.trace",),
    ),
    Case(
        "otel_batch",
        "OpenTelemetry SDK span, BatchSpanProcessor",
        "peer",
        _OTEL_PAIR,
        _otel("batch"),
        requires=("opentelemetry.sdk.trace",),
    ),
    Case(
        "langchain_1",
        "LangChain CallbackManager, 1 no-op handler",
        "peer",
        _LANGCHAIN_PAIR,
        _langchain,
        requires=("langchain_core.callbacks",),
    ),
]
