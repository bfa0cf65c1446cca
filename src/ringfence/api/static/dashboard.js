// ringfence dashboard: the page is rendered on the server; this keeps it live. On every
// journal event (server-sent events from /api/v1/events) and every 5 s, fetch the page's
// main part again (/dashboard/main) and put it in place. No build step, no dependencies.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch("/dashboard/main", {cache: "no-store"}).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.text();
    }).then(function (html) {
      main.innerHTML = html;
    }).catch(function () {
      live.textContent = "reconnecting";
    }).finally(function () {
      busy = false;
      if (again) { again = false; setTimeout(refresh, 300); }
    });
  }
  if (window.EventSource) {
    var events = new EventSource("/api/v1/events");
    events.onopen = function () { live.textContent = "live"; };
    events.onerror = function () { live.textContent = "reconnecting"; };
    events.addEventListener("journal", function () { refresh(); });
  }
  setInterval(refresh, 5000);
})();
