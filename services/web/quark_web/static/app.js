/* Quark web client: the little JavaScript the pages need (CSP: script-src 'self', nothing inline).
   HTMX does the rest. Image upload with progress: XHR to /write/upload, then poll until the thumbnail
   is processed, then put the image into the editor. */
(function () {
  "use strict";

  function csrf() {
    var attr = document.body.getAttribute("hx-headers");
    try { return JSON.parse(attr)["X-CSRF-Token"]; } catch (e) { return ""; }
  }

  function pollReady(id, status, onReady, deadline) {
    fetch("/write/media/" + encodeURIComponent(id), { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (m) {
        if (m && m.status === "ready") { onReady(m); return; }
        if (m && m.status === "failed") { status.textContent = status.dataset.failed; return; }
        if (Date.now() > deadline) { status.textContent = status.dataset.slow; return; }
        setTimeout(function () { pollReady(id, status, onReady, deadline); }, 400);
      })
      .catch(function () { status.textContent = status.dataset.failed; });
  }

  function insertAtCursor(area, text) {
    var start = area.selectionStart || area.value.length, end = area.selectionEnd || area.value.length;
    area.value = area.value.slice(0, start) + text + area.value.slice(end);
    area.dispatchEvent(new Event("input", { bubbles: true }));
    area.dispatchEvent(new KeyboardEvent("keyup", { bubbles: true }));
  }

  function setupUpload(input) {
    var form = input.closest("form");
    var bar = document.getElementById(input.dataset.progress);
    var status = document.getElementById(input.dataset.status);
    var thumbs = document.getElementById(input.dataset.thumbs);
    var ids = form.querySelector("input[name=media_ids]");
    var area = form.querySelector("textarea[name=body]");
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (!file) { return; }
      var data = new FormData();
      data.append("file", file, file.name);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/write/upload");
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.setRequestHeader("Accept", "application/json");
      bar.hidden = false; bar.value = 0;
      status.textContent = status.dataset.uploading;
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) { bar.value = Math.round(100 * e.loaded / e.total); }
      });
      xhr.addEventListener("load", function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if (xhr.status !== 201 || !body) {
          status.textContent = (body && body.message) || status.dataset.failed;
          return;
        }
        bar.value = 100;
        status.textContent = status.dataset.processing;
        pollReady(body.id, status, function (m) {
          var li = document.createElement("li");
          var img = document.createElement("img");
          img.src = m.thumb; img.alt = file.name; img.dataset.mediaId = m.id;
          li.appendChild(img); thumbs.appendChild(li);
          ids.value = ids.value ? ids.value + "," + m.id : m.id;
          insertAtCursor(area, "\n![" + file.name.replace(/[\[\]]/g, "") + "](" + m.medium + ")\n");
          status.textContent = status.dataset.done;
          input.value = "";
        }, Date.now() + 60000);
      });
      xhr.addEventListener("error", function () { status.textContent = status.dataset.failed; });
      xhr.send(data);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var inputs = document.querySelectorAll("input[data-upload]");
    for (var i = 0; i < inputs.length; i++) { setupUpload(inputs[i]); }
    var tz = document.querySelectorAll("input[data-tz-offset]");
    for (var j = 0; j < tz.length; j++) { tz[j].value = String(new Date().getTimezoneOffset()); }
  });
})();
