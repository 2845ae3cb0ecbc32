// Live updates for /, /projects and /containers: after each change that ingest commits
// (/api/v1/stream/changes), read the table's own JSON again and rewrite the rows it shows.
// Only textContent and known class names are set: no server text is parsed as HTML.
"use strict";
(function () {
  var table = document.querySelector("table.groups[data-api]");
  if (!table || !window.EventSource || !window.fetch) return;
  var STATUSES = ["up", "degraded", "down", "stopped", "stale", "unknown", "gone"];
  var state = table.querySelector(".live-state");
  var api = table.getAttribute("data-api");
  var busy = false;

  function keyOf(item) {
    return item.project !== undefined ? item.project : item.agent + "/" + item.container_id;
  }

  function set(row, field, text) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (cell) cell.textContent = text;
  }

  function update(items) {
    var byKey = {};
    items.forEach(function (item) { byKey[keyOf(item)] = item; });
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var item = byKey[row.getAttribute("data-key")];
      if (!item || STATUSES.indexOf(item.status) < 0) return;
      row.className = "status-" + item.status;
      var badge = row.querySelector('[data-field="status"]');
      if (badge) badge.className = "status status-" + item.status;
      set(row, "status", item.status);
      set(row, "addresses", item.addresses_up + " of " + item.addresses_total);
      if (item.containers_total !== undefined) {
        set(row, "containers", item.containers_up + " of " + item.containers_total);
      }
      row.setAttribute("data-updated", String(Date.now()));
    });
  }

  function refresh() {
    if (busy) return;
    busy = true;
    fetch(api, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) { if (body) update(Array.isArray(body) ? body : body.items); })
      .catch(function () {})
      .then(function () { busy = false; });
  }

  var source = new EventSource("/api/v1/stream/changes");
  source.addEventListener("changed", refresh);
  source.addEventListener("open", function () { if (state) state.textContent = " · live"; });
  source.addEventListener("error", function () { if (state) state.textContent = " · reconnecting"; });
})();
