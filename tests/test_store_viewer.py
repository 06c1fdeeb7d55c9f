"""``callbacks view``: the HTTP pages, and a real browser (Debian's chromium, headless, through
Playwright) on a database filled by the demo."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright import sync_api

from callbacks import CallbackManager, EventPayload, EventType
from callbacks_store import StorePlugin, demo_defaults, make_server, view_hint

try:  # the demo is moving out of the host into its own built-in plugin
    from callbacks_demo import run_demo  # type: ignore[import-not-found]
except ImportError:
    from callbacks.demo import run_demo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Playwright must never fetch a browser of its own: it drives the system's chromium.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
SCREENSHOT_IN_DOCS = Path(__file__).resolve().parents[1] / "docs" / "viewer.png"


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """A database written by the store during a demo run of three questions, configured the way
    the demo turns the store on (``demo_defaults``)."""
    out = tmp_path_factory.mktemp("viewer-demo")
    manager = CallbackManager([StorePlugin()], config=demo_defaults(out))
    run_demo(questions=3, concurrency=2, out_dir=out, manager=manager, stream=io.StringIO())
    manager.shutdown()
    db = out / "traces.db"
    assert view_hint(db) == f"Traces stored in {db}; see them with: callbacks view --db {db}\n"
    return db


@pytest.fixture
def viewer(demo_db):
    server = make_server(demo_db, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()
    thread.join()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def db_rows(db: Path, sql: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_pages_filter_and_paginate_on_the_server(viewer, demo_db):
    traces = db_rows(demo_db, "SELECT id, name FROM traces ORDER BY start_ns DESC")
    status, page = get(viewer + "/")
    assert status == 200
    assert all(f'href="/trace/{trace_id}"' in page for trace_id, _ in traces)
    assert "<script" not in page and "http://" not in page.replace(viewer, "")
    status, page = get(viewer + "/?name=query")
    queries = [t for t in traces if t[1] == "query"]
    assert page.count('href="/trace/') == len(queries) == 3
    status, data = get(viewer + "/api/traces?status=ok")
    assert (
        json.loads(data)["total"]
        == db_rows(demo_db, "SELECT COUNT(*) FROM traces WHERE status = 'ok'")[0][0]
    )
    assert get(viewer + "/trace/nope")[0] == 404
    assert get(viewer + "/elsewhere")[0] == 404


def test_pagination_links_walk_every_trace_once(tmp_path):
    db = tmp_path / "many.db"
    cm = CallbackManager([StorePlugin()], config={"store": {"path": str(db)}})
    for i in range(120):
        with cm.as_trace(f"t{i}"), cm.event(EventType.QUERY):
            pass
    cm.shutdown()
    server = make_server(db, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        seen: list[str] = []
        url = base + "/"
        while url:
            _, page = get(url)
            seen += [part.split('"')[0] for part in page.split('href="/trace/')[1:]]
            older = (
                page.split('">Older</a>')[0].rsplit('href="', 1)[-1] if "Older" in page else None
            )
            url = base + older.replace("&amp;", "&") if older else None
        expected = [r[0] for r in db_rows(db, "SELECT id FROM traces ORDER BY start_ns DESC")]
        assert seen == expected
    finally:
        server.shutdown()
        server.server_close()


def test_a_real_browser_shows_the_demo_traces_and_an_llm_call(viewer, demo_db, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)")
    traces = db_rows(demo_db, "SELECT id, name, event_count FROM traces ORDER BY start_ns DESC")
    query_id = next(trace_id for trace_id, name, _ in traces if name == "query")
    llm_record = json.loads(
        db_rows(
            demo_db,
            "SELECT record FROM events WHERE trace_id = ? AND type = 'llm' "
            "AND json_extract(record, '$.inputs.formatted_prompt') IS NOT NULL "
            "ORDER BY start_ns LIMIT 1",
            query_id,
        )[0][0]
    )
    prompt = llm_record["inputs"][EventPayload.PROMPT.value]
    completion = llm_record["outputs"][EventPayload.COMPLETION.value]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(viewer + "/")
            rows = page.locator("table.traces tbody tr")
            assert rows.count() == len(traces)
            assert rows.first.locator("td").first.inner_text() == traces[0][1]
            page.locator(f'a[href="/trace/{query_id}"]').click()
            page.wait_for_url(f"**/trace/{query_id}")
            waterfall = page.locator(".wf-row")
            assert waterfall.count() == dict((t[0], t[2]) for t in traces)[query_id]
            page.locator(f'.wf-row[data-event="{llm_record["id"]}"]').click()
            page.wait_for_url(f"**event={llm_record['id']}*")
            detail = page.locator("#detail")
            text = detail.inner_text()
            assert "llm" in text and llm_record["model"] in text
            assert " ".join(prompt.split()) in " ".join(text.split())
            assert " ".join(completion.split()) in " ".join(text.split())
            page.screenshot(path=str(tmp_path / "viewer-llm.png"), full_page=True)

            # The agent's chat call: messages with their roles, tool calls with arguments.
            chat = json.loads(
                db_rows(
                    demo_db,
                    "SELECT record FROM events WHERE trace_id = ? AND type = 'llm' "
                    "AND json_extract(record, '$.outputs.response.message.tool_calls') "
                    "IS NOT NULL LIMIT 1",
                    query_id,
                )[0][0]
            )
            page.locator(f'.wf-row[data-event="{chat["id"]}"]').click()
            page.wait_for_url(f"**event={chat['id']}*")
            roles = detail.locator(".msg .role").all_inner_texts()
            expected_roles = [m["role"] for m in chat["inputs"]["messages"]] + ["assistant"]
            assert [r.lower() for r in roles] == expected_roles
            calls = chat["outputs"]["response"]["message"]["tool_calls"]
            shown = detail.locator(".toolcall b").all_inner_texts()
            assert shown == [c["function"]["name"] for c in calls]
            assert str(chat["usage"]["total"]) in detail.inner_text()
            shot = tmp_path / "viewer.png"
            page.evaluate("window.scrollTo(0, 0)")  # the link jumped to #detail
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            if os.environ.get("CALLBACKS_UPDATE_SCREENSHOT"):
                shutil.copy(shot, SCREENSHOT_IN_DOCS)
            assert all(url.startswith(viewer) for url in requested), requested
        finally:
            browser.close()


def test_a_trace_that_ends_while_the_page_is_open_appears_on_refresh(tmp_path):
    db = tmp_path / "live.db"
    cm = CallbackManager([StorePlugin()], config={"store": {"path": str(db)}})
    with cm.as_trace("first"), cm.event(EventType.QUERY):
        pass
    cm.flush()
    server = make_server(db, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            assert page.locator("table.traces tbody tr").count() == 1
            with cm.as_trace("second"), cm.event(EventType.LLM):
                pass
            # No flush: the store commits at the trace's end; wait for that, as a reader would.
            for _ in range(100):
                page.reload()
                if page.locator("table.traces tbody tr").count() == 2:
                    break
                page.wait_for_timeout(50)
            names = page.locator("table.traces tbody tr td:first-child").all_inner_texts()
            assert names == ["second", "first"]
            browser.close()
    finally:
        cm.shutdown()
        server.shutdown()
        server.server_close()


def test_callbacks_view_serves_on_loopback_and_says_so(demo_db):
    script = Path(sys.executable).with_name("callbacks")
    proc = subprocess.Popen(
        [str(script), "view", "--db", str(demo_db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "(loopback only" in line, line + proc.stderr.read()
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        assert url.startswith("http://127.0.0.1:")
        status, page = get(url)
        assert status == 200 and 'class="traces"' in page
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_odd_ids_and_texts_are_escaped_and_still_reachable(tmp_path):
    db = tmp_path / "odd.db"
    cm = CallbackManager([StorePlugin()], config={"store": {"path": str(db)}})
    odd = 'a/b?c=<script>&"'
    with cm.as_trace("<b>name</b>", trace_id=odd):
        with cm.event(EventType.LLM, {EventPayload.PROMPT: "<script>alert(1)</script>"}):
            pass
    cm.shutdown()
    server = make_server(db, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        _, listing = get(base + "/")
        assert "<script>" not in listing and "&lt;b&gt;name&lt;/b&gt;" in listing
        href = listing.split('href="/trace/')[1].split('"')[0]
        status, page = get(base + "/trace/" + href.replace("&amp;", "&"))
        assert status == 200 and "<script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    finally:
        server.shutdown()
        server.server_close()
