"""live.js in headless Chromium against a scripted WebSocket and fetch (no server): reconnect with exponential
backoff, periodic refresh of the live regions while the socket is down and only then, no retry after 4401, rows
inserted as text (never HTML)."""

from pathlib import Path

import pytest

from web.tests.browser import chromium  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LIVE_JS = (Path(__file__).resolve().parents[1] / "static" / "web" / "live.js").read_text()

HARNESS = """
document.body.innerHTML = `
  <span id="live-status"></span>
  <div id="open-positions-card" data-live-region><table id="open-positions"><tbody>
    <tr class="empty-row"><td>No open positions.</td></tr></tbody></table></div>`;
document.body.setAttribute("data-live-url", "/ws/live/");
document.body.setAttribute("data-refresh-ms", "150");
window.sockets = [];
window.fetches = 0;
class FakeSocket {
  constructor(url) { this.url = url; this.readyState = 0; this.sent = []; window.sockets.push(this); }
  send(data) { this.sent.push(data); }
  open() { this.readyState = 1; this.onopen && this.onopen({}); }
  message(payload) { this.onmessage && this.onmessage({data: JSON.stringify(payload)}); }
  drop(code) { this.readyState = 3; this.onclose && this.onclose({code: code || 1006}); }
}
FakeSocket.OPEN = 1;
window.WebSocket = FakeSocket;
window.fetch = function () {
  window.fetches += 1;
  const html = `<div id="open-positions-card" data-live-region><table id="open-positions"><tbody>
    <tr data-position-id="9"><td>from the server</td></tr></tbody></table></div>`;
  return Promise.resolve({ok: true, redirected: false, url: "", text: () => Promise.resolve(html)});
};
"""


@pytest.fixture
def page(chromium):  # noqa: F811
    chromium.get("about:blank")
    chromium.execute_script(HARNESS)
    chromium.execute_script(LIVE_JS)
    return chromium


def js(page, script):
    return page.execute_script(script)


def wait_for(page, script, timeout=10):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(page, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(script))


def test_backoff_doubles_up_to_thirty_seconds(page):
    delays = js(page, "return [0,1,2,3,4,5,6,10].map(n => window.perpsLive.backoffDelay(n));")
    for n, delay in enumerate([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]):
        assert 0.8 * delay <= delays[n] <= 1.2 * delay


def test_connects_then_falls_back_to_refresh_while_down_and_stops_after_reconnect(page):
    assert js(page, "return window.sockets.length;") == 1
    assert js(page, "return window.sockets[0].url;").endswith("/ws/live/")
    js(page, "window.sockets[0].open();")
    assert js(page, "return document.body.getAttribute('data-live-state');") == "live"
    js(page, "window.fetches = 0;")

    js(page, "window.sockets[0].drop(1006);")  # the connection is lost
    assert js(page, "return document.body.getAttribute('data-live-state');") == "offline"
    wait_for(page, "return window.fetches >= 3;")  # regions re-fetched every 150 ms while down
    assert js(page, "return document.querySelector('#open-positions').textContent;").strip() == "from the server"
    wait_for(page, "return window.sockets.length === 2;", timeout=5)  # reconnected after ~1 s
    js(page, "window.sockets[1].open();")
    catch_up = js(page, "return window.fetches;")
    js(page, "return new Promise(r => setTimeout(r, 600)).then(() => 0);")
    fetches_after = js(page, "return window.fetches;")
    assert fetches_after <= catch_up + 1  # one catch-up refresh on reconnect, then no more polling
    assert js(page, "return document.body.getAttribute('data-live-state');") == "live"


def test_second_failure_waits_longer(page):
    js(page, "window.sockets[0].drop(1006);")
    wait_for(page, "return window.sockets.length === 2;", timeout=5)
    js(page, "window.t1 = Date.now(); window.sockets[1].drop(1006);")  # fails again before opening
    wait_for(page, "return window.sockets.length === 3;", timeout=6)
    waited = js(page, "return Date.now() - window.t1;")
    assert waited >= 1500  # ~2 s the second time (1 s the first)


def test_a_4401_close_is_not_retried(page):
    js(page, "window.sockets[0].open(); window.sockets[0].drop(4401);")
    js(page, "return new Promise(r => setTimeout(r, 1500)).then(() => 0);")
    assert js(page, "return window.sockets.length;") == 1
    assert js(page, "return document.getElementById('live-status').textContent;") == "Signed out"


def test_position_events_insert_text_not_html(page):
    js(page, "window.sockets[0].open();")
    js(
        page,
        """window.sockets[0].message({type: "position", id: 5, symbol: "<img src=x onerror=alert(1)>",
                side: "long", mode: "paper", status: "open", quantity: "1.50", entry_price: "0.5",
                stop_price: "0.49", net_pnl: "0", close_reason: ""});""",
    )
    row = js(page, "return document.querySelector('tr[data-position-id=\"5\"]').innerHTML;")
    assert "&lt;img" in row and "<img" not in row
    assert js(page, "return document.querySelector('#open-positions tr.empty-row');") is None
    js(
        page,
        """window.sockets[0].message({type: "position", id: 5, symbol: "X", side: "long", mode: "paper",
                status: "closed", quantity: "0", net_pnl: "1", close_reason: "tp2"});""",
    )
    assert js(page, "return document.querySelector('#open-positions tr[data-position-id=\"5\"]');") is None


def test_staff_events_update_the_control_panel(page):
    js(
        page,
        """document.body.insertAdjacentHTML("beforeend",
        '<span id="cp-health-heartbeat">never</span><span id="cp-health-queues"></span><p id="cp-broadcast-status"></p>');""",
    )
    js(page, "window.sockets[0].open();")
    js(
        page,
        """window.sockets[0].message({type: "health", heartbeat_age_seconds: 12.4, errors_today: {view: 2},
                queue_lengths: {scan: 0, trade: 3}, last_scan: null});""",
    )
    js(page, """window.sockets[0].message({type: "broadcast", id: "abc123", queued: 500, total: 1200, done: false});""")
    assert js(page, "return document.getElementById('cp-health-heartbeat').textContent;") == "12 s ago"
    assert js(page, "return document.getElementById('cp-health-queues').textContent;") == "scan: 0 · trade: 3"
    assert (
        js(page, "return document.getElementById('cp-broadcast-status').textContent;")
        == "Broadcast abc123: 500 / 1200 queued…"
    )


def test_signal_events_prepend_a_row_and_events_refresh_the_other_regions(page):
    js(
        page,
        """document.body.insertAdjacentHTML("beforeend",
        '<table id="signal-history"><tbody><tr data-signal-id="1"><td>old</td></tr></tbody></table>');""",
    )
    js(page, "window.sockets[0].open(); window.fetches = 0;")
    js(
        page,
        """window.sockets[0].message({type: "signal", id: 2, symbol: "SOL/USDT:USDT", side: "short",
                source: "technical", risk_level: "low", entry: "150.2500", outcome: "open", outcome_pnl_pct: null,
                created_at: "2026-03-01T12:15:00+00:00"});""",
    )
    first = js(page, "return document.querySelector('#signal-history tbody tr').getAttribute('data-signal-id');")
    assert first == "2"
    text = js(page, "return document.querySelector('#signal-history tr[data-signal-id=\"2\"]').textContent;")
    assert "SOL/USDT:USDT" in text and "150.25" in text and "03-01 12:15" in text
    wait_for(page, "return window.fetches === 1;", timeout=3)  # PnL and other live regions re-read once (debounced)
