"""The ``callbacks view`` web server: the standard library's ``http.server`` over a read-only
connection per request, so a trace committed by a running app shows on the next refresh."""

from __future__ import annotations

import json
import logging
import sqlite3
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import render
from .reader import TraceNotFoundError, get_trace, list_traces
from .schema import StoreMissingError, connect_read

__all__ = ["PAGE_SIZE", "make_server"]

logger = logging.getLogger(__name__)

PAGE_SIZE = 50

# Distinct names by hopping through the name index (one lookup per name), not a full scan.
_DISTINCT_NAMES = """
WITH RECURSIVE names(name) AS (
    SELECT MIN(name) FROM traces
    UNION ALL
    SELECT (SELECT MIN(name) FROM traces WHERE name > names.name) FROM names
    WHERE names.name IS NOT NULL
)
SELECT name FROM names WHERE name IS NOT NULL LIMIT 200
"""


def make_server(db: str | Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server (not yet serving: call ``serve_forever``) for the database at ``db``."""

    class Handler(_Handler):
        db_path = Path(db)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


class _Handler(BaseHTTPRequestHandler):
    db_path: Path
    server_version = "callbacks-view"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            conn = connect_read(self.db_path)
        except StoreMissingError as error:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, render.error_page(str(error)))
            return
        try:
            if not parts:
                self._list(conn, query)
            elif parts[0] == "trace" and len(parts) == 2:
                self._trace(conn, parts[1], query.get("event"))
            elif parts == ["api", "traces"]:
                page = self._page(conn, query)
                self._send_json({"traces": page.traces, "total": page.total})
            elif parts[:2] == ["api", "traces"] and len(parts) == 3:
                trace, events = get_trace(conn, parts[2])
                self._send_json({"trace": trace, "events": events})
            else:
                self._send(HTTPStatus.NOT_FOUND, render.error_page("No such page."))
        except TraceNotFoundError as error:
            self._send(HTTPStatus.NOT_FOUND, render.error_page(str(error.args[0])))
        except (sqlite3.Error, ValueError) as error:
            self._send(HTTPStatus.BAD_REQUEST, render.error_page(f"Cannot read: {error}"))
        finally:
            conn.close()

    def _page(self, conn: sqlite3.Connection, query: dict[str, str]) -> Any:
        offset = max(0, int(query.get("offset") or 0))
        return list_traces(
            conn,
            limit=PAGE_SIZE,
            offset=offset,
            name=query.get("name") or None,
            status=query.get("status") or None,
            session=query.get("session") or None,
        )

    def _list(self, conn: sqlite3.Connection, query: dict[str, str]) -> None:
        page = self._page(conn, query)
        names = [r[0] for r in conn.execute(_DISTINCT_NAMES)]
        self._send(HTTPStatus.OK, render.list_page(page, names, str(self.db_path)))

    def _trace(self, conn: sqlite3.Connection, trace_id: str, selected: str | None) -> None:
        trace, events = get_trace(conn, trace_id)
        self._send(HTTPStatus.OK, render.trace_page(trace, events, selected))

    def _send(self, status: HTTPStatus, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, value: Any) -> None:
        data = json.dumps(value).encode("utf-8")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
