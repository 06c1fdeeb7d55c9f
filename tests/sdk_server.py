"""A loopback HTTP server that answers like the OpenAI and Anthropic APIs, for the real SDK
clients (``base_url=server.url``). Tests queue the replies; the shapes below follow each
provider's API reference (chat completions, chat completion chunks, the Responses API and its
stream events, embeddings, Anthropic messages and their stream events, error bodies)."""

from __future__ import annotations

import base64
import json
import struct
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One HTTP reply: a JSON body, or (``events`` set) a server-sent event stream."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str | None, Any]] | None = None
    """``(event name or None, data)``; data is JSON-encoded unless it is a str."""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class LoopbackAPI:
    """``with LoopbackAPI() as api:`` serves queued replies on 127.0.0.1 in a thread."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                with api._lock:
                    api.requests.append(
                        Request(
                            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                    reply = api.replies.popleft() if api.replies else None
                if reply is None:
                    reply = Reply({"error": {"message": "no reply queued"}}, status=500)
                if callable(reply.body):
                    reply = Reply(reply.body(body), reply.status, reply.headers, reply.events)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.events is None:
                    data = json.dumps(reply.body).encode()
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for name, data in reply.events:
                    text = data if isinstance(data, str) else json.dumps(data)
                    frame = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
                    self.wfile.write(frame.encode())
                    self.wfile.flush()

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def __enter__(self) -> LoopbackAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


# -- OpenAI shapes (https://platform.openai.com/docs/api-reference) -------------------------------

OPENAI_MODEL = "gpt-4o-mini-2024-07-18"


def openai_usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(
    content: str | None, tool_calls: list[dict] | None = None, usage: dict | None = None
) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": OPENAI_MODEL,
        "system_fingerprint": "fp_44709d6fcb",
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        "usage": usage or openai_usage(19, 10),
    }


def tool_call(call_id: str, name: str, arguments: dict) -> dict:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": OPENAI_MODEL,
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def chat_stream(
    pieces: list[str], usage: dict | None, tool: tuple[str, str, list[str]] | None = None
) -> list[tuple[str | None, Any]]:
    """Chunks as OpenAI streams them: a role delta, content deltas (or one tool call's id and
    name, then its argument fragments), a finish chunk, a usage-only chunk, then ``[DONE]``."""
    chunks = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [_chunk({"content": piece}) for piece in pieces]
    if tool is not None:
        call_id, name, fragments = tool
        chunks.append(
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        chunks += [
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}) for f in fragments
        ]
    chunks.append(_chunk({}, "tool_calls" if tool else "stop"))
    if usage is not None:
        final = _chunk({})
        final["choices"] = []
        final["usage"] = usage
        chunks.append(final)
    return [(None, c) for c in chunks] + [(None, "[DONE]")]


def openai_error(status: int, message: str, kind: str, code: str | None) -> Reply:
    return Reply(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status=status,
        headers={"x-request-id": "req_error_1"},
    )


def embeddings_reply(request: dict) -> dict:
    """Deterministic vectors, base64 float32 when the client asks for it (the SDK does)."""
    texts = request["input"] if isinstance(request["input"], list) else [request["input"]]
    data = []
    for i, text in enumerate(texts):
        vector = [round(len(text) / 10.0, 3), float(i), -1.5]
        embedding: Any = vector
        if request.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(len(t.split()) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


RESPONSES_MODEL = "gpt-4.1-2025-04-14"


def responses_usage(inp: int, out: int, cached: int = 0, reasoning: int = 0) -> dict:
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


def response_object(output: list[dict], usage: dict | None, status: str = "completed") -> dict:
    return {
        "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "object": "response",
        "created_at": 1741476542,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": RESPONSES_MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def message_item(text: str) -> dict:
    return {
        "type": "message",
        "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def function_call_item(call_id: str, name: str, arguments: dict) -> dict:
    return {
        "type": "function_call",
        "id": "fc_67ca09c6bedc8190a7abfec07b1a1332",
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def responses_stream(pieces: list[str], usage: dict) -> list[tuple[str | None, Any]]:
    """A streamed Responses API text reply, event by event as the API reference lists them."""
    text = "".join(pieces)
    item_id = "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b"
    seq = iter(range(1000))
    events: list[dict] = [
        {"type": "response.created", "response": response_object([], None, "in_progress")},
        {"type": "response.in_progress", "response": response_object([], None, "in_progress")},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {
                "id": item_id,
                "status": "in_progress",
                "type": "message",
                "role": "assistant",
                "content": [],
            },
        },
        {
            "type": "response.content_part.added",
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []},
        },
    ]
    events += [
        {
            "type": "response.output_text.delta",
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "delta": piece,
            "logprobs": [],
        }
        for piece in pieces
    ]
    events += [
        {
            "type": "response.output_text.done",
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text", "text": text, "annotations": []},
        },
        {"type": "response.output_item.done", "output_index": 0, "item": message_item(text)},
        {"type": "response.completed", "response": response_object([message_item(text)], usage)},
    ]
    for event in events:
        event["sequence_number"] = next(seq)
    return [(e["type"], e) for e in events]


# -- Anthropic shapes (https://docs.anthropic.com/en/api/messages) --------------------------------

CLAUDE = "claude-sonnet-4-5-20250929"


def anthropic_usage(inp: int, out: int, cache_read: int = 0, cache_write: int = 0) -> dict:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "service_tier": "standard",
    }


def claude_message(content: list[dict], usage: dict, stop: str = "end_turn") -> dict:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def claude_stream(
    pieces: list[str],
    start_usage: dict,
    delta_usage: dict,
    tool: tuple[str, str, list[str]] | None = None,
) -> list[tuple[str | None, Any]]:
    """A streamed message as the API sends it: message_start (with the input usage), a text
    block, optionally a tool_use block with input_json_delta fragments, message_delta (with the
    output usage) and message_stop; a ping in between."""
    start = claude_message([], start_usage, stop=None)  # type: ignore[arg-type]
    events: list[dict] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        for p in pieces
    ]
    events.append({"type": "content_block_stop", "index": 0})
    if tool is not None:
        call_id, name, fragments = tool
        events.append(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
            }
        )
        events += [
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": f},
            }
            for f in ["", *fragments]
        ]
        events.append({"type": "content_block_stop", "index": 1})
    events += [
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
            "usage": delta_usage,
        },
        {"type": "message_stop"},
    ]
    return [(e["type"], e) for e in events]


def anthropic_error(status: int, kind: str, message: str) -> Reply:
    return Reply(
        {"type": "error", "error": {"type": kind, "message": message}},
        status=status,
        headers={"request-id": "req_018EeWyXxfu5pfWkrYcMdjWG"},
    )


class _QuietServer(ThreadingHTTPServer):
    """A client that abandons a stream closes its connection mid-reply (the tests do that on
    purpose): not an error worth socketserver's traceback on the terminal."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]
