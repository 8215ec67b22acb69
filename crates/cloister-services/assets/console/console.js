// Cloister console's one script. Every page works without it; it adds two things:
// - follows a running instance's serial console: polls the page's own JSON endpoint for the
//   bytes after the last it saw and appends them as text (never markup). Without it the page
//   refreshes itself (<noscript> meta refresh).
// - shows an upload's progress: the bucket page's form is sent by XMLHttpRequest (the same
//   POST, CSRF token and all) so the bar can follow the bytes sent. Without it the form posts
//   as usual.
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
(function () {
  var form = document.querySelector("form[data-upload]");
  if (!form) return;
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      bar.max = e.total;
      bar.value = e.loaded;
      status.textContent = "Sent " + e.loaded + " of " + e.total + " bytes.";
    });
    // Success is the bucket's page; a redirect elsewhere (the sign-in page, once the session
    // ended) stored nothing.
    var bucketPage = new URL(form.action).pathname.replace(/\/upload$/, "");
    xhr.addEventListener("load", function () {
      var landed = xhr.responseURL ? new URL(xhr.responseURL).pathname : "";
      if (landed !== bucketPage && xhr.status < 300) {
        status.textContent = "Refused: your session has ended; sign in again and upload once more.";
        return;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        // The answer is the bucket's page (the redirect, followed): offered, not forced, so
        // the finished bar stays in view.
        var file = form.querySelector("input[type=file]").files[0];
        status.textContent = "Uploaded " + (file ? file.size : 0) + " bytes. ";
        var list = document.createElement("a");
        list.href = xhr.responseURL;
        list.textContent = "Show the bucket's objects";
        status.appendChild(list);
        form.reset();
        return;
      }
      // The refusal is the server's error page: its text only, never its markup.
      var page = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var main = page.querySelector("main");
      status.textContent = "Refused (HTTP " + xhr.status + "): " + (main ? main.textContent.trim() : xhr.statusText);
    });
    xhr.addEventListener("error", function () {
      status.textContent = "The upload failed: the connection was lost. Nothing was stored.";
    });
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Uploading…";
    xhr.send(new FormData(form));
  });
})();
