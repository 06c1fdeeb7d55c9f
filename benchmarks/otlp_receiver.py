"""A loopback OTLP/HTTP trace receiver for the end-to-end benchmark, run as its own process so
that decoding the requests is not charged to the application being measured.

``POST /v1/traces`` decodes the protobuf ``ExportTraceServiceRequest`` and counts its spans;
``GET /count`` answers ``{"spans": N, "requests": M}``; ``POST /reset`` zeroes both. The process
prints its port on the first line of stdout and serves until stdin closes.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["main"]


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


if __name__ == "__main__":
    sys.exit(main())
