"""A loopback OTLP/HTTP trace receiver for the end-to-end benchmark, run as its own process so
that decoding the requests is not charged to the application being measured.

``POST /v1/traces`` decodes the protobuf ``ExportTraceServiceRequest`` and counts its spans;
``GET /count`` answers ``{"spans": N, "requests": M}``; ``POST /reset`` zeroes both. The process
prints its port on the first line of stdout and serves until stdin closes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["ReceiverProcess", "main", "run_app"]


def main() -> int:
    """Serve on an ephemeral 127.0.0.1 port until standard input closes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    counts = {"spans": 0, "requests": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/reset":
                with lock:
                    counts.update(spans=0, requests=0)
                self._answer(b"{}", "application/json")
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(data)
            spans = sum(
                len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans
            )
            with lock:
                counts["spans"] += spans
                counts["requests"] += 1
            self._answer(b"", "application/x-protobuf")

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(counts).encode()
            self._answer(body, "application/json")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdout.write(f"{server.server_address[1]}\n")
    sys.stdout.flush()
    sys.stdin.read()
    server.shutdown()
    return 0


class ReceiverProcess:
    """The receiver, started as a child process: its ``endpoint``, its span count, reset and
    close."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.otlp_receiver"],
            cwd=Path(__file__).resolve().parents[1],  # where the benchmarks package is
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else {}

    def reset(self) -> None:
        """Zero the counts."""
        self._call("POST", "/reset")

    def spans(self) -> int:
        """Spans received since the start or the last reset."""
        return int(self._call("GET", "/count")["spans"])

    def close(self) -> None:
        """Stop the receiver."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


def run_app(receiver: ReceiverProcess, module: str, config: str, *args: str) -> dict[str, Any]:
    """Run one benchmark app (``python -m module --config config --out-dir <tmp> --endpoint
    <receiver> *args``) in a fresh process; return the JSON line it printed last, with
    ``spans_received``: what the receiver got from it."""
    receiver.reset()
    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                module,
                "--config",
                config,
                "--out-dir",
                tmp,
                "--endpoint",
                receiver.endpoint,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"{config} {' '.join(args)} failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    result["spans_received"] = receiver.spans()
    return result


if __name__ == "__main__":
    sys.exit(main())
