/* Registers the service worker (offline shell). CSP: script-src 'self', nothing inline. */
(function () {
  "use strict";
  if ("serviceWorker" in navigator && window.isSecureContext) {
    window.addEventListener("load", function () {
      navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () { /* installable later */ });
    });
  }
})();
