"""The store's subcommands of ``callbacks``: ``traces`` (list, ``show``, ``export``),
``replay`` and ``view``."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from callbacks import hookimpl
from callbacks.payloads import summarize
from callbacks.wire import WireFormatError, parse_lines

from .formatting import format_duration, format_time
from .reader import TraceNotFoundError, export_records, get_trace, list_traces
from .schema import StoreMissingError, connect_read
from .settings import StoreSettings

__all__ = ["CommandError", "add_commands"]


class CommandError(Exception):
    """Bad input to a store command: reported as one line, exit status 2."""


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``traces``, ``replay`` and ``view`` to the ``callbacks`` command."""
    traces = commands.add_parser("traces", help="list the newest stored traces (store plugin)")
    _db_argument(traces)
    traces.add_argument("-n", type=int, default=20, help="how many (default 20)")
    traces.add_argument("--name", help="only traces with this name")
    traces.add_argument("--status", choices=("ok", "error", "running"), help="only this status")
    traces.add_argument("--session", help="only traces of this session id")
    traces.add_argument("--json", action="store_true", help="machine-readable output")
    traces.set_defaults(run=_guarded(_cmd_list))
    sub = traces.add_subparsers(dest="traces_command", metavar="SUBCOMMAND")

    show = sub.add_parser("show", help="one trace as a tree with timings, inputs and outputs")
    show.add_argument("id", help="trace id (or a unique prefix)")
    _db_argument(show)
    show.add_argument("--json", action="store_true", help="the trace and its event records")
    show.set_defaults(run=_guarded(_cmd_show))

    export = sub.add_parser("export", help="write traces and events as JSON Lines")
    _db_argument(export)
    export.add_argument(
        "--since", help="only traces started since: an ISO date/time or an age such as 2h, 7d"
    )
    export.add_argument("--out", required=True, help="the .jsonl file to write")
    export.set_defaults(run=_guarded(_cmd_export))

    replay = commands.add_parser(
        "replay", help="re-emit exported traces into the active plugins (store plugin)"
    )
    replay.add_argument("file", help="a JSON Lines file from 'callbacks traces export'")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, default=1.0, help="pace: 1 = original timings (default), 2 = 2x"
    )
    pace.add_argument("--fast", action="store_true", help="no pacing: durations near zero")
    replay.set_defaults(run=_guarded(_cmd_replay))

    view = commands.add_parser("view", help="browse stored traces in a local web UI")
    _db_argument(view)
    view.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1, loopback)")
    view.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    view.add_argument("--open", action="store_true", help="open it in the web browser")
    view.set_defaults(run=_guarded(_cmd_view))


def _db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", help="the trace database (default: [store] path / CALLBACKS_STORE__PATH)"
    )


def _guarded(fn: Any) -> Any:
    def run(args: argparse.Namespace, out: TextIO) -> int:
        try:
            return int(fn(args, out))
        except CommandError as error:
            sys.stderr.write(f"callbacks {args.command}: {error}\n")
            return 2
        except (StoreMissingError, TraceNotFoundError) as error:
            sys.stderr.write(f"callbacks {args.command}: {error.args[0]}\n")
            return 2
        except sqlite3.Error as error:
            sys.stderr.write(f"callbacks {args.command}: cannot read the database: {error}\n")
            return 2

    return run


# -- database and settings -------------------------------------------------------------------


class _SettingsOnly:
    """Stands in for the store plugin to read the ``[store]`` section from every source."""

    callbacks_name = "store"
    callbacks_delivery = "inline"

    @hookimpl
    def callbacks_settings(self) -> type[StoreSettings]:
        return StoreSettings


def configured_path() -> str | None:
    """``[store] path`` as the configuration gives it (environment, TOML, pyproject)."""
    from callbacks import CallbackManager

    manager = CallbackManager([_SettingsOnly()])
    try:
        settings = manager.plugin_settings("store")
    finally:
        manager.shutdown(1.0)
    return settings.path if isinstance(settings, StoreSettings) else None


def _db_path(args: argparse.Namespace) -> Path:
    path = args.db or configured_path()
    if not path:
        raise CommandError(
            "no trace database: pass --db PATH or set [store] path (CALLBACKS_STORE__PATH)"
        )
    return Path(path)


@contextmanager
def _reading(args: argparse.Namespace) -> Iterator[sqlite3.Connection]:
    conn = connect_read(_db_path(args))
    try:
        yield conn
    finally:
        conn.close()


# -- traces ----------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    if args.n < 1:
        raise CommandError(f"-n must be at least 1, got {args.n}")
    with _reading(args) as conn:
        page = list_traces(
            conn, limit=args.n, name=args.name, status=args.status, session=args.session
        )
    if args.json:
        out.write(json.dumps(page.traces, indent=2) + "\n")
        return 0
    if not page.traces:
        out.write("No traces.\n")
        return 0
    rows = [
        [
            t["id"][:12],
            t["name"],
            format_time(t["start_ns"]),
            format_duration(t["duration_ns"]),
            str(t["event_count"]),
            str(t["llm_tokens"]),
            t["status"],
            t["session_id"] or "",
        ]
        for t in page.traces
    ]
    headers = ["ID", "NAME", "START", "DURATION", "EVENTS", "TOKENS", "STATUS", "SESSION"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    if page.total > len(page.traces):
        out.write(f"({len(page.traces)} of {page.total}; -n for more)\n")
    return 0


def _cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    with _reading(args) as conn:
        trace, events = get_trace(conn, args.id)
    if args.json:
        out.write(json.dumps({"trace": trace, "events": events}, indent=2) + "\n")
        return 0
    out.write(
        f"{trace['name']}  {trace['id']}  {format_time(trace['start_ns'])}  "
        f"{format_duration(trace['duration_ns'])}  {trace['status']}  "
        f"{trace['event_count']} events  {trace['llm_tokens']} LLM tokens\n"
    )
    for key in ("session_id", "user_id"):
        if trace["attributes"].get(key):
            out.write(f"  {key}: {trace['attributes'][key]}\n")
    children: dict[str, list[dict[str, Any]]] = {}
    ids = {e["id"] for e in events}
    for event in events:
        parent = event["parent_id"] if event["parent_id"] in ids else "root"
        children.setdefault(parent, []).append(event)
    _write_tree(out, children, "root", "")
    return 0


def _write_tree(
    out: TextIO, children: dict[str, list[dict[str, Any]]], parent: str, prefix: str
) -> None:
    kids = children.get(parent, [])
    for i, event in enumerate(kids):
        last = i == len(kids) - 1
        out.write(
            f"{prefix}{'└─' if last else '├─'} {event['type']}  "
            f"{format_duration(event['duration_ns'])}"
            f"{'  ' + event['model'] if event.get('model') else ''}"
            f"{'  tokens ' + str(event['usage']['total']) if event.get('usage') else ''}\n"
        )
        detail = prefix + ("   " if last else "│  ")
        for label, payload in (("in ", event["inputs"]), ("out", event["outputs"])):
            for key, value in payload.items():
                out.write(f"{detail}  {label} {key}: {summarize(value, 70)}\n")
        error = event.get("exception")
        if error:
            out.write(f"{detail}  ERR {error['type']}: {error['message']}\n")
        _write_tree(out, children, event["id"], detail)


def _cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    since = parse_since(args.since) if args.since else None
    target = Path(args.out)
    traces = events = 0
    with _reading(args) as conn:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "w", encoding="utf-8") as f:
                for record in export_records(conn, since_ns=since):
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    traces += record["kind"] == "trace"
                    events += record["kind"] == "event"
        except OSError as error:
            raise CommandError(f"cannot write {target}: {error.strerror or error}") from None
    out.write(f"Exported {traces} traces and {events} events to {target}\n")
    return 0


_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str) -> int:
    """Wall-clock ns for ``--since``: an ISO date or date-time (local time unless it says
    otherwise) or an age such as ``90m``, ``2h``, ``7d``."""
    match = _AGE.match(text.strip())
    if match:
        age = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        return int((datetime.now(timezone.utc) - age).timestamp() * 1e9)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--since {text!r} is neither an ISO date/time (2026-11-25, 2026-11-25T14:00) "
            f"nor an age (90m, 2h, 7d)"
        ) from None
    return min(int(moment.timestamp() * 1e9), 2**63 - 1)  # SQLite integers are 64-bit


# -- replay ----------------------------------------------------------------------------------


def _cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    from callbacks import CallbackManager

    from .replay import replay

    if not args.fast and not args.speed > 0:
        raise CommandError(f"--speed must be above 0, got {args.speed} (use --fast not to wait)")
    path = Path(args.file)
    try:
        with open(path, encoding="utf-8") as f:
            parsed = list(parse_lines(f))
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise CommandError(f"{path} is not UTF-8 text ({error.reason})") from None
    bad = [item for _, item in parsed if isinstance(item, WireFormatError)]
    good = [item for _, item in parsed if not isinstance(item, WireFormatError)]
    for problem in bad:
        sys.stderr.write(f"callbacks replay: {path}: {problem} (skipped)\n")
    manager = CallbackManager(load_entrypoints=True)
    try:
        result = replay(good, manager, speed=None if args.fast else args.speed)
    finally:
        manager.shutdown()
    out.write(
        f"Replayed {result.traces} traces and {result.events} events into: "
        f"{', '.join(manager.list_plugins()) or 'no plugins'}\n"
    )
    return 2 if bad else 0


# -- view ------------------------------------------------------------------------------------


def _cmd_view(args: argparse.Namespace, out: TextIO) -> int:
    from .viewer import make_server

    path = _db_path(args)
    conn = connect_read(path)  # a missing or unreadable database is an error now, not per page
    try:
        conn.execute("SELECT 1 FROM traces LIMIT 1").fetchall()
    finally:
        conn.close()
    try:
        server = make_server(path, args.host, args.port)
    except OSError as error:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None
    host, port = str(server.server_address[0]), server.server_address[1]
    url = f"http://{host}:{port}/"
    scope = (
        "loopback only: other machines cannot reach it"
        if str(host).startswith("127.") or host == "::1"
        else "WARNING: reachable from the network, with no authentication"
    )
    out.write(f"Serving traces from {path} on {url} ({scope}). Ctrl-C to stop.\n")
    out.flush()
    if args.open:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
