/* Live updates of the dashboard over the /ws/live/ WebSocket (web/live_updates.py).
 *
 * - Position and signal events update the tables in place (rows keyed by data-position-id / data-signal-id);
 *   every other live region ([data-live-region] with an id) is refreshed from the server after an event.
 * - The socket reconnects with exponential backoff (1 s, 2 s, 4 s ... 30 s, with jitter). While it is down the
 *   live regions are re-fetched every data-refresh-ms (default 30 s), so the page never goes stale.
 * - A socket closed with 4401 (session gone) is not retried; the periodic refresh then leads to the login page.
 * No build step, no dependencies. Text is always inserted with textContent (never as HTML).
 */
(function () {
  "use strict";
  var body = document.body;
  var config = document.querySelector("[data-live-url]");  // <body> on the dashboard, a container in the admin
  if (!config || !("WebSocket" in window)) { return; }
  var path = config.getAttribute("data-live-url");
  var refreshMs = parseInt(config.getAttribute("data-refresh-ms") || "30000", 10);
  var socket = null, attempt = 0, retryTimer = null, fallbackTimer = null, pingTimer = null, refreshTimer = null;
  var stopped = false;

  function setStatus(state, text) {
    body.setAttribute("data-live-state", state);
    var statusEl = document.getElementById("live-status");  // looked up each time: a region refresh replaces it
    if (statusEl) { statusEl.textContent = text; statusEl.setAttribute("data-state", state); }
  }

  function backoffDelay(n) {
    var base = Math.min(30000, 1000 * Math.pow(2, n));
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  // ---- region refresh (after events, and periodically while the socket is down) ----
  function refreshRegions() {
    var regions = document.querySelectorAll("[data-live-region][id]");
    if (!regions.length) { return Promise.resolve(); }
    return fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "live-refresh" } })
      .then(function (response) {
        if (response.redirected && response.url.indexOf("/dashboard/login/") !== -1) {
          window.location.assign(response.url);
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        regions.forEach(function (region) {
          var replacement = fresh.getElementById(region.id);
          if (replacement) { region.replaceWith(document.importNode(replacement, true)); }
        });
        body.setAttribute("data-live-refreshed", String(Date.now()));
      })
      .catch(function () { /* offline: the next tick tries again */ });
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshRegions, 300);
  }

  function startFallback() {
    if (fallbackTimer === null) { fallbackTimer = setInterval(refreshRegions, refreshMs); }
  }

  function stopFallback() {
    if (fallbackTimer !== null) { clearInterval(fallbackTimer); fallbackTimer = null; }
  }

  // ---- table rows ----
  function cell(text, className) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
    if (className) { td.className = className; }
    return td;
  }

  function number(text) {
    if (text === null || text === undefined) { return null; }
    var n = Number(text);
    return isFinite(n) ? String(n) : String(text);
  }

  function upsertRow(tbody, key, value, cells, prepend) {
    var row = tbody.querySelector("tr[" + key + '="' + value + '"]');
    var fresh = document.createElement("tr");
    fresh.setAttribute(key, String(value));
    fresh.className = "live-new";
    cells.forEach(function (td) { fresh.appendChild(td); });
    var empty = tbody.querySelector("tr.empty-row");
    if (empty) { empty.remove(); }
    if (row) { row.replaceWith(fresh); } else if (prepend) { tbody.insertBefore(fresh, tbody.firstChild); } else { tbody.appendChild(fresh); }
  }

  function onPosition(event) {
    var openBody = document.querySelector("#open-positions tbody");
    var closedBody = document.querySelector("#closed-positions tbody");
    var key = "data-position-id";
    if (event.status === "closed") {
      if (openBody) {
        var row = openBody.querySelector("tr[" + key + '="' + event.id + '"]');
        if (row) { row.remove(); }
      }
      if (closedBody) {
        var net = Number(event.net_pnl);
        upsertRow(closedBody, key, event.id, [
          cell(event.symbol), cell(event.side), cell(event.mode), cell(event.close_reason),
          cell(isFinite(net) ? net.toFixed(2) : event.net_pnl, net >= 0 ? "up" : "down"), cell("now"),
        ], true);
      }
    } else if (openBody) {
      upsertRow(openBody, key, event.id, [
        cell(event.symbol), cell(event.side), cell(event.mode), cell(number(event.quantity)),
        cell(number(event.entry_price)), cell(number(event.stop_price)), cell(null), cell(event.status === "open" ? "now" : event.status),
      ], false);
    }
    refreshSoon();
  }

  function onSignal(event) {
    var tbody = document.querySelector("#signal-history tbody");
    if (tbody) {
      var pnl = event.outcome_pnl_pct === null ? null : Number(event.outcome_pnl_pct);
      var when = new Date(event.created_at);
      var stamp = isNaN(when) ? "" : when.toISOString().slice(5, 16).replace("T", " ");
      upsertRow(tbody, "data-signal-id", event.id, [
        cell(stamp), cell(event.symbol), cell(event.side), cell(event.source), cell(event.risk_level),
        cell(number(event.entry)), cell(event.outcome), cell(pnl === null ? null : pnl.toFixed(2), pnl === null ? "" : (pnl > 0 ? "up" : "down")),
      ], true);
    }
    refreshSoon();
  }

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }

  function pairs(mapping) {
    if (!mapping) { return "–"; }
    var keys = Object.keys(mapping);
    return keys.length ? keys.map(function (k) { return k + ": " + (mapping[k] === null ? "?" : mapping[k]); }).join(" · ") : "–";
  }

  function onHealth(event) {  // staff stream (admin control panel)
    var age = event.heartbeat_age_seconds;
    setText("cp-health-heartbeat", age === null || age === undefined ? "never" : Math.round(age) + " s ago");
    setText("cp-health-queues", pairs(event.queue_lengths));
    setText("cp-health-errors", pairs(event.errors_today));
    if (event.events_waiting !== undefined) { setText("cp-health-outbox", String(event.events_waiting)); }
    var scan = event.last_scan;
    if (event.last_scan_text) { setText("cp-health-scan", event.last_scan_text); }
    else if (scan) { setText("cp-health-scan", String(scan.finished_at || scan.started_at || "running")); }
    body.setAttribute("data-live-health", String(Date.now()));
  }

  function onBroadcast(event) {  // staff stream: fan-out progress of an operator broadcast
    setText("cp-broadcast-status", "Broadcast " + event.id + ": " + event.queued + " / " + event.total +
            " queued" + (event.done ? " (done)" : "…"));
  }

  var handlers = { position: onPosition, signal: onSignal, health: onHealth, broadcast: onBroadcast };

  // ---- the socket ----
  function connect() {
    if (stopped) { return; }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    setStatus("connecting", attempt ? "Reconnecting…" : "Connecting…");
    try {
      socket = new WebSocket(scheme + window.location.host + path);
    } catch (error) {
      scheduleReconnect();
      return;
    }
    socket.onopen = function () {
      var wasDown = attempt > 0;
      attempt = 0;
      stopFallback();
      setStatus("live", "Live");
      clearInterval(pingTimer);
      pingTimer = setInterval(function () {
        if (socket && socket.readyState === WebSocket.OPEN) { socket.send('{"type": "ping"}'); }
      }, 25000);
      if (wasDown) { refreshRegions(); }  // catch up on what happened while disconnected
    };
    socket.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (error) { return; }
      var handler = event && handlers[event.type];
      if (handler) { handler(event); }
      document.dispatchEvent(new CustomEvent("live:event", { detail: event }));
    };
    socket.onclose = function (closeEvent) {
      clearInterval(pingTimer);
      socket = null;
      startFallback();
      if (closeEvent.code === 4401) {
        stopped = true;
        setStatus("offline", "Signed out");
        return;
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    var delay = backoffDelay(attempt);
    attempt += 1;
    setStatus("offline", "Offline, retrying in " + Math.round(delay / 1000) + " s");
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
  }

  window.perpsLive = { refreshRegions: refreshRegions, backoffDelay: backoffDelay,
                       state: function () { return body.getAttribute("data-live-state"); } };
  connect();
})();
