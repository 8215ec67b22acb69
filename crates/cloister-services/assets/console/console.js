// Cloister console: follows a running instance's serial console. Polls the console page's
// own JSON endpoint for the bytes after the last it saw and appends them as text (never
// markup). Without this script the page refreshes itself instead (<noscript> meta refresh).
"use strict";
(function () {
  var pre = document.querySelector("pre[data-follow]");
  if (!pre) return;
  var url = pre.getAttribute("data-follow");
  var next = pre.getAttribute("data-next");
  var status = document.getElementById("console-status");
  function poll() {
    fetch(url + "?start=" + encodeURIComponent(next), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (out) {
        if (out.contents) {
          var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.appendChild(document.createTextNode(out.contents));
          if (atEnd) pre.scrollTop = pre.scrollHeight;
        }
        next = out.next;
        if (out.running) {
          setTimeout(poll, 1500);
        } else if (status) {
          status.textContent = "The instance stopped: " + out.status + ".";
        }
      })
      .catch(function (e) {
        if (status) status.textContent = "Following stopped (" + e.message + "); reload the page to resume.";
      });
  }
  if (status) status.textContent = "Running: new output appears as it is written.";
  setTimeout(poll, 1500);
})();
