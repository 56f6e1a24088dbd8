// belay console: progressive enhancement only. Every page works without this script; with it,
// the approval queue refreshes itself when holds appear or are decided (server-sent events).
// No inline script anywhere: the Content-Security-Policy allows only this file.
(function () {
  "use strict";
  var queue = document.getElementById("queue");
  if (queue && window.EventSource) {
    // The feed speaks only when the waiting approvals differ from those this page shows.
    var shown = function () {
      var cards = queue.querySelector("[data-holds]");
      return cards ? cards.getAttribute("data-holds") : "";
    };
    var source = new EventSource("/console/approvals/feed?since=" + encodeURIComponent(shown()));
    source.addEventListener("holds", function () {
      // Keep what a person is typing: refresh only when no form field has focus.
      var active = document.activeElement;
      if (active && queue.contains(active) && active.tagName !== "BUTTON") {
        return;
      }
      fetch("/console/approvals/queue", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null) {
            // The fragment is rendered by the server with every value escaped.
            queue.innerHTML = html;
            queue.setAttribute("data-refreshed", String(Date.now()));
          }
        });
    });
  }
  // Buttons that ask before acting (a rollback's confirmation, force).
  document.addEventListener("submit", function (e) {
    var b = e.submitter;
    var msg = b && b.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) {
      e.preventDefault();
    }
  });
})();
