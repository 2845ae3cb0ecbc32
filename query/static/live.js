// Live updates for /addresses: follow /api/v1/stream and rewrite the rows it names, in place.
// Only textContent and known class names are set, so no server text is ever parsed as HTML.
"use strict";
(function () {
  var table = document.getElementById("addresses");
  var ids = table && table.getAttribute("data-stream-ids");
  if (!ids || !window.EventSource) return;
  var STATUSES = ["up", "down", "stale", "stopped", "unknown", "gone"];
  var state = document.getElementById("live-state");
  var source = new EventSource("/api/v1/stream?ids=" + encodeURIComponent(ids));

  function set(row, field, text, iso) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (!cell) return;
    cell.textContent = text;
    if (iso !== undefined) cell.setAttribute("datetime", iso);
  }

  function update(item) {
    var row = table.querySelector('tr[data-target-id="' + Number(item.target_id) + '"]');
    if (!row || STATUSES.indexOf(item.status) < 0) return;
    row.className = "status-" + item.status;
    var badge = row.querySelector('[data-field="status"]');
    if (badge) badge.className = "status status-" + item.status;
    if (item.name) set(row, "name", item.name);
    set(row, "status", item.status);
    set(row, "error", item.error);
    set(row, "latency", item.latency);
    set(row, "last_ok", item.last_ok, item.last_ok_iso);
    set(row, "since", item.since, item.since_iso);
    row.setAttribute("data-updated", String(Date.now()));
  }

  source.addEventListener("rows", function (event) {
    JSON.parse(event.data).forEach(update);
  });
  source.addEventListener("open", function () {
    if (state) state.textContent = " · live";
  });
  source.addEventListener("error", function () {
    if (state) state.textContent = " · reconnecting";
  });
})();
