// fedge console: refreshes the parts of a page marked data-live (a
// running job, an active rollout) every two seconds, and stops once the
// server's fragment no longer carries the mark. No library.
"use strict";
(function () {
  function poll(el) {
    var url = el.getAttribute("data-live");
    if (!url) { return; }
    setTimeout(function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.status === 401) { location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null) {
            el.innerHTML = html;
            el.setAttribute("data-updated", String(Date.now()));
            if (el.querySelector("[data-final]")) { return; } // the job or rollout ended
          }
          poll(el);
        })
        .catch(function () { poll(el); });
    }, 2000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(poll);
  });
})();
