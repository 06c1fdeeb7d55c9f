"""HTML pages of the viewer, rendered on the server: no script, no web font, no asset from
anywhere (the style sheet is inline), so it works offline and clicking is following a link."""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from .formatting import format_duration, format_time
from .reader import TracePage

__all__ = ["error_page", "list_page", "trace_page"]

_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232a;
background:#f6f7f9}
header{background:#1d232a;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:600}header small{color:#aab}
main{padding:12px 16px}a{color:#1f5fbf}table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#eef0f3;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.status-ok{color:#1a7f37}.status-error{color:#c62828;font-weight:600}.status-running{color:#9a6700}
form.filters{display:flex;gap:8px;margin-bottom:8px;align-items:center;flex-wrap:wrap}
.pager{margin:8px 0;display:flex;gap:12px}
.trace-grid{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:12px}
.wf{background:#fff;border:1px solid #e3e6ea}.wf-row{display:grid;
grid-template-columns:260px 1fr 70px;align-items:center;border-bottom:1px solid #f0f1f3;
text-decoration:none;color:inherit;min-height:22px}.wf-row:hover{background:#f3f6fb}
.wf-row.selected{background:#e4edfb}.wf-name{white-space:nowrap;overflow:hidden;
text-overflow:ellipsis;font-family:ui-monospace,monospace;font-size:12px}
.wf-track{position:relative;height:14px}.wf-bar{position:absolute;top:2px;height:10px;
min-width:2px;border-radius:2px;background:#8a94a6}.wf-dur{text-align:right;font-size:12px;
padding-right:6px;font-variant-numeric:tabular-nums}
.t-llm{background:#7b4fd6}.t-retrieve,.t-reranking{background:#1f8a70}.t-embedding{background:#d08a1f}
.t-query,.t-agent_step{background:#1f5fbf}.t-function_call{background:#c2185b}
.t-exception,.failed{background:#c62828}
.panel{background:#fff;border:1px solid #e3e6ea;padding:8px 12px;overflow-wrap:anywhere}
.panel h2{font-size:16px;margin:4px 0 8px}.panel h3{font-size:13px;margin:12px 0 4px;
text-transform:uppercase;color:#5b6472;letter-spacing:.04em}
pre{white-space:pre-wrap;background:#f6f7f9;padding:6px 8px;margin:4px 0;border-radius:3px;
font-size:12px}.msg{border-left:3px solid #8a94a6;padding:2px 8px;margin:6px 0}
.msg .role{font-weight:600;font-size:12px;text-transform:uppercase}
.role-system{border-color:#9a6700}.role-user{border-color:#1f5fbf}
.role-assistant{border-color:#7b4fd6}.role-tool{border-color:#c2185b}
.error{border-left:3px solid #c62828;background:#fdecea;padding:4px 8px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}dt{color:#5b6472}
details summary{cursor:pointer;color:#5b6472;font-size:12px}.tool{margin:4px 0}
dl.facts{display:flex;flex-wrap:wrap;gap:4px 18px;margin:0 0 10px}dl.facts dd{margin:0 0 0 4px}
dl.facts div{display:flex}h1{font-size:20px;margin:4px 0 6px}
"""


def _page(title: str, body: str, subtitle: str = "") -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · callbacks</title><style>{_STYLE}</style></head><body>"
        f'<header><a href="/">callbacks traces</a><small>{escape(subtitle)}</small></header>'
        f"<main>{body}</main></body></html>"
    )


def error_page(message: str) -> str:
    """A page that says what went wrong."""
    return _page(
        "Error", f'<p class="error">{escape(message)}</p><p><a href="/">All traces</a></p>'
    )


# -- the trace list --------------------------------------------------------------------------


def list_page(page: TracePage, names: list[str], db: str) -> str:
    """The trace list: filters, one row per trace (newest first), and the pager."""
    f = page.filters
    name_options = "".join(
        f'<option value="{escape(n)}"{" selected" if f.get("name") == n else ""}>{escape(n)}'
        "</option>"
        for n in names
    )
    status_options = "".join(
        f'<option value="{s}"{" selected" if f.get("status") == s else ""}>{s or "any"}</option>'
        for s in ("", "ok", "error", "running")
    )
    form = (
        '<form class="filters" method="get" action="/">'
        f'<label>Name <select name="name"><option value="">any</option>{name_options}</select>'
        f'</label><label>Status <select name="status">{status_options}</select></label>'
        f'<label>Session <input name="session" value="{escape(f.get("session", ""))}" size="16">'
        '</label><button type="submit">Filter</button> <a href="/">Clear</a>'
        ' · <a href="">Refresh</a></form>'
    )
    rows = "".join(_list_row(t) for t in page.traces) or (
        '<tr><td colspan="9">No traces match.</td></tr>'
    )
    table = (
        '<table class="traces"><thead><tr><th>Name</th><th>Start</th><th>Duration</th>'
        "<th>Events</th><th>LLM tokens</th><th>Status</th><th>Session</th><th>User</th>"
        f"<th>Id</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    first = page.offset + 1 if page.traces else 0
    last = page.offset + len(page.traces)
    pager = [f"<span>{first}-{last} of {page.total}</span>"]
    if page.offset > 0:
        pager.append(_pager_link("Newer", f, max(0, page.offset - page.limit)))
    if last < page.total:
        pager.append(_pager_link("Older", f, last))
    return _page(
        "Traces",
        form + table + f'<div class="pager">{"".join(pager)}</div>',
        f"{db} · served on loopback",
    )


def _pager_link(label: str, filters: Mapping[str, str], offset: int) -> str:
    return f'<a href="/?{escape(urlencode({**filters, "offset": offset}))}">{label}</a>'


def _list_row(t: Mapping[str, Any]) -> str:
    return (
        f'<tr><td><a href="/trace/{_q(t["id"])}">{escape(t["name"])}</a></td>'
        f"<td>{format_time(t['start_ns'])}</td>"
        f'<td class="num">{format_duration(t["duration_ns"])}</td>'
        f'<td class="num">{t["event_count"]}</td><td class="num">{t["llm_tokens"]}</td>'
        f'<td class="status-{escape(t["status"])}">{escape(t["status"])}</td>'
        f"<td>{escape(t['session_id'] or '')}</td><td>{escape(t['user_id'] or '')}</td>"
        f"<td><code>{escape(t['id'][:12])}</code></td></tr>"
    )


# -- one trace -------------------------------------------------------------------------------


def trace_page(trace: Mapping[str, Any], events: list[dict[str, Any]], selected: str | None) -> str:
    """The waterfall (rows indented as the tree, bars placed on the trace's time line) and the
    selected event's inputs and outputs."""
    ids = {e["id"] for e in events}
    children: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        parent = event["parent_id"] if event["parent_id"] in ids else "root"
        children.setdefault(parent, []).append(event)
    ordered: list[tuple[int, dict[str, Any]]] = []
    _walk(children, "root", 0, ordered)
    chosen = next((e for e in events if e["id"] == selected), events[0] if events else None)
    start = trace["start_ns"]
    span = max([trace.get("duration_ns") or 0] + [e["end_ns"] - start for e in events] + [1])
    rows = "".join(_wf_row(trace["id"], e, depth, start, span, e is chosen) for depth, e in ordered)
    attributes = trace.get("attributes") or {}
    facts = {
        "Status": trace["status"],
        "Start": format_time(start),
        "Duration": format_duration(trace.get("duration_ns")),
        "Events": trace.get("event_count"),
        "LLM tokens": trace.get("llm_tokens"),
        "Session": attributes.get("session_id"),
        "User": attributes.get("user_id"),
        "Replayed": "yes" if attributes.get("replayed") else None,
        "Id": trace["id"],
    }
    items = "".join(
        f"<div><dt>{escape(k)}</dt><dd>{escape(str(v))}</dd></div>"
        for k, v in facts.items()
        if v is not None
    )
    head = f'<h1>{escape(trace["name"])}</h1><dl class="facts">{items}</dl>'

    detail = _event_panel(chosen, start) if chosen is not None else "<p>No events.</p>"
    body = (
        f'{head}<div class="trace-grid"><div class="wf">{rows}</div>'
        f'<div class="panel" id="detail">{detail}</div></div>'
    )
    return _page(trace["name"], body, trace["id"])


def _walk(
    children: dict[str, list[dict[str, Any]]],
    parent: str,
    depth: int,
    out: list[tuple[int, dict[str, Any]]],
) -> None:
    for event in children.get(parent, []):
        out.append((depth, event))
        _walk(children, event["id"], depth + 1, out)


def _wf_row(
    trace_id: str, e: Mapping[str, Any], depth: int, start: int, span: int, selected: bool
) -> str:
    left = 100 * (e["start_ns"] - start) / span
    width = 100 * e["duration_ns"] / span
    failed = " failed" if e.get("exception") else ""
    label = e["type"] + (f" · {e['model']}" if e.get("model") else "")
    href = f"/trace/{_q(trace_id)}?event={_q(e['id'])}#detail"
    return (
        f'<a class="wf-row{" selected" if selected else ""}" href="{href}" '
        f'data-type="{escape(e["type"])}" data-event="{escape(e["id"])}">'
        f'<span class="wf-name" style="padding-left:{4 + depth * 14}px">{escape(label)}</span>'
        f'<span class="wf-track"><span class="wf-bar t-{escape(e["type"])}{failed}" '
        f'style="left:{left:.3f}%;width:{width:.3f}%"></span></span>'
        f'<span class="wf-dur">{format_duration(e["duration_ns"])}</span></a>'
    )


def _q(value: str) -> str:
    """A path segment or query value, percent-encoded, then escaped for an attribute."""
    return escape(quote(str(value), safe=""))


def _dl(facts: Mapping[str, Any]) -> str:
    items = "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts.items() if v is not None
    )
    return f"<dl>{items}</dl>"


def _event_panel(e: Mapping[str, Any], trace_start: int) -> str:
    usage = e.get("usage") or {}
    facts = {
        "Type": e["type"],
        "Duration": format_duration(e["duration_ns"]),
        "Starts at": f"+{format_duration(e['start_ns'] - trace_start)}",
        "Model": e.get("model"),
        "Prompt tokens": usage.get("prompt"),
        "Completion tokens": usage.get("completion"),
        "Total tokens": usage.get("total"),
        "Id": e["id"],
        "Parent": e["parent_id"],
    }
    parts = [f"<h2>{escape(e['type'])}</h2>", _dl(facts)]
    error = e.get("exception")
    if error:
        parts.append(
            f'<h3>Error</h3><div class="error"><b>{escape(str(error.get("type")))}</b>: '
            f"{escape(str(error.get('message')))}</div>"
        )
        if error.get("traceback"):
            parts.append(f"<pre>{escape(error['traceback'])}</pre>")
    for title, payload in (("Inputs", e.get("inputs") or {}), ("Outputs", e.get("outputs") or {})):
        if payload:
            parts.append(f"<h3>{title}</h3>")
            parts.extend(_value(key, value) for key, value in payload.items())
    return "".join(parts)


_LABELS = {
    "formatted_prompt": "Prompt",
    "completion": "Completion",
    "response": "Response",
    "messages": "Messages",
    "query_str": "Query",
    "nodes": "Nodes",
    "documents": "Documents",
    "function_call": "Tool call arguments",
    "function_call_response": "Tool result",
    "tool": "Tool",
    "tools": "Tools offered",
    "usage": "Usage",
    "exception": "Exception",
}


def _value(key: str, value: Any) -> str:
    label = f'<div class="key"><b>{escape(_LABELS.get(key, key))}</b></div>'
    if key in ("messages",) and isinstance(value, list):
        return label + "".join(_message(m) for m in value if isinstance(m, Mapping))
    if key in ("nodes", "documents") and isinstance(value, list):
        return label + _nodes(value)
    if (
        key == "response"
        and isinstance(value, Mapping)
        and isinstance(value.get("message"), Mapping)
    ):
        return label + _message(value["message"])
    if key == "exception" and isinstance(value, Mapping) and "type" in value:
        return label + (
            f'<div class="error"><b>{escape(str(value["type"]))}</b>: '
            f"{escape(str(value.get('message')))}</div>"
        )
    if key == "function_call" and isinstance(value, str):
        return label + f"<pre>{escape(_pretty_json_text(value))}</pre>"
    if key == "tools" and isinstance(value, list):
        return label + "".join(_tool(t) for t in value)
    if isinstance(value, str):
        return label + f"<pre>{escape(value)}</pre>"
    return label + _folded(json.dumps(value, indent=2, ensure_ascii=False))


def _folded(text: str, summary: str | None = None) -> str:
    """Long JSON folded in a native ``<details>`` (no script needed to open it)."""
    if len(text) <= _FOLD_CHARS and summary is None:
        return f"<pre>{escape(text)}</pre>"
    return (
        f"<details><summary>{escape(summary or f'{len(text):,} characters')}</summary>"
        f"<pre>{escape(text)}</pre></details>"
    )


def _tool(tool: Any) -> str:
    function = tool.get("function", tool) if isinstance(tool, Mapping) else {}
    if not isinstance(function, Mapping):
        function = {}
    name = str(function.get("name", "?"))
    description = str(function.get("description") or "")
    parameters = json.dumps(function.get("parameters", {}), indent=2, ensure_ascii=False)
    return (
        f'<div class="tool"><b>{escape(name)}</b> {escape(description)}'
        f"{_folded(parameters, 'parameters')}</div>"
    )


_FOLD_CHARS = 600


def _message(m: Mapping[str, Any]) -> str:
    role = str(m.get("role") or "user")
    extra = ""
    for call in m.get("tool_calls") or []:
        function = call.get("function", call) if isinstance(call, Mapping) else {}
        name = function.get("name", "?") if isinstance(function, Mapping) else "?"
        arguments = function.get("arguments", "") if isinstance(function, Mapping) else call
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        extra += (
            f'<div class="toolcall">calls <b>{escape(str(name))}</b>'
            f"<pre>{escape(_pretty_json_text(arguments))}</pre></div>"
        )
    if m.get("tool_call_id"):
        extra += f"<small>answers tool call {escape(str(m['tool_call_id']))}</small>"
    content = m.get("content")
    text = f"<pre>{escape(str(content))}</pre>" if content else ""
    return (
        f'<div class="msg role-{escape(role)}"><span class="role">{escape(role)}</span>'
        f"{text}{extra}</div>"
    )


def _nodes(nodes: list[Any]) -> str:
    rows = "".join(
        f'<tr><td class="num">{_score(n.get("score"))}</td><td><code>{escape(str(n.get("id")))}'
        f"</code></td><td>{escape(str(n.get('text', '')))}</td></tr>"
        for n in nodes
        if isinstance(n, Mapping)
    )
    return f"<table><thead><tr><th>Score</th><th>Id</th><th>Text</th></tr></thead>{rows}</table>"


def _score(score: Any) -> str:
    return f"{score:.3f}" if isinstance(score, (int, float)) else "-"


def _pretty_json_text(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
