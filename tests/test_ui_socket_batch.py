"""``ui/public/socket_batch.js`` in a real browser: the messages a socket receives while the
page is busy reach the handler together, in order, none lost; a handler that throws does not
stop the others. A local WebSocket server on 127.0.0.1 sends a burst; the handler is busy
20 ms per message, as Chainlit's client is while it re-renders the chat."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_fixtures import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]

SCRIPT = Path(__file__).resolve().parent.parent / "ui" / "public" / "socket_batch.js"
BURST = 12
# The last is Chainlit's turn end (a Socket.IO event packet): the batch goes at once.
MESSAGES = [*(str(i) for i in range(BURST - 1)), '42["task_end"]']

LISTEN = """([url, n, throwAt]) => new Promise((resolve) => {
  window.got = []; window.batches = 0;
  let inBatch = false;
  const ws = new WebSocket(url);
  ws.onopen = () => ws.send("go");
  ws.onmessage = (ev) => {
    if (!inBatch) { inBatch = true; window.batches++; queueMicrotask(() => { inBatch = false; }); }
    window.got.push(ev.data);
    const until = performance.now() + 20;
    while (performance.now() < until) {}  // a re-render's worth of work
    if (ev.data === String(throwAt)) throw new Error("a handler's own error");
  };
  window.handlerIsKept = ws.onmessage !== null && typeof ws.onmessage === "function";
  resolve();
})"""


@pytest.fixture(scope="module")
def burst_server() -> Iterator[str]:
    from websockets.sync.server import serve

    def handler(ws) -> None:
        ws.recv()  # "go": the page's handler is in place
        for message in MESSAGES:
            ws.send(message)
        ws.recv()  # keep the connection open until the page closes it

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()


def _receive(browser, url: str, batched: bool, throw_at: int = -1) -> tuple[list[str], int]:
    page = browser.new_page()
    try:
        if batched:
            page.add_script_tag(path=str(SCRIPT))
        page.evaluate(LISTEN, [url, BURST, throw_at])
        assert page.evaluate("window.handlerIsKept")
        page.wait_for_function(f"window.got.length >= {BURST}", timeout=60_000)
        return page.evaluate("window.got"), page.evaluate("window.batches")
    finally:
        page.close()


def test_a_burst_reaches_the_handler_in_few_batches_in_order(browser, burst_server):
    got, batches = _receive(browser, burst_server, batched=True)
    assert got == MESSAGES
    assert batches < BURST / 2, batches
    # Without the script each message is a task of its own: what the script is for.
    got, plain = _receive(browser, burst_server, batched=False)
    assert got == MESSAGES and plain == BURST


def test_a_handler_that_throws_does_not_stop_the_rest(browser, burst_server):
    page = browser.new_page()
    try:
        page.add_script_tag(path=str(SCRIPT))
        with page.expect_event("pageerror", timeout=60_000) as error:
            page.evaluate(LISTEN, [burst_server, BURST, 3])
            page.wait_for_function(f"window.got.length >= {BURST}", timeout=60_000)
        assert "a handler's own error" in str(error.value)
        assert page.evaluate("window.got") == MESSAGES
    finally:
        page.close()
