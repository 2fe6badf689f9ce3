// Cairn dashboard: refreshes the page's content every 30 seconds while the
// tab is visible and no form is being used. Plain JavaScript, no build step;
// every page works without it. Failures are silent: the next tick retries.
(function () {
  "use strict";

  var PERIOD_MS = 30000;
  var edited = false;
  var lastRefresh = Date.now();
  var busy = false;

  // A notice belongs to the action just taken: drop it from the address so a
  // refresh or a reload does not show it again.
  try {
    var url = new URL(window.location.href);
    if (url.searchParams.has("notice")) {
      url.searchParams.delete("notice");
      window.history.replaceState(null, "", url.toString());
    }
  } catch (ignored) {
    // An old browser: the notice stays, which is harmless.
  }

  document.addEventListener("input", function () { edited = true; }, true);
  document.addEventListener("change", function () { edited = true; }, true);

  function formInUse() {
    if (edited) {
      return true;
    }
    var active = document.activeElement;
    if (!active) {
      return false;
    }
    var tag = active.tagName;
    return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" ||
      (tag === "BUTTON" && active.form !== null);
  }

  function swap(fresh, selector) {
    var now = document.querySelector(selector);
    var next = fresh.querySelector(selector);
    if (now && next) {
      now.replaceWith(document.importNode(next, true));
    }
  }

  function refresh() {
    if (busy || document.hidden || formInUse()) {
      return;
    }
    busy = true;
    window.fetch(window.location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "text/html" }
    }).then(function (response) {
      if (!response.ok) {
        return null;
      }
      return response.text();
    }).then(function (text) {
      // Nothing may have changed the page meanwhile.
      if (text === null || formInUse()) {
        return;
      }
      var fresh = new DOMParser().parseFromString(text, "text/html");
      if (!fresh.querySelector("main")) {
        return;
      }
      swap(fresh, "header.site");
      swap(fresh, "main");
      swap(fresh, "footer");
      if (fresh.title) {
        document.title = fresh.title;
      }
      lastRefresh = Date.now();
    }).catch(function () {
      // Offline or the server restarting: try again on the next tick.
    }).then(function () {
      busy = false;
    });
  }

  window.setInterval(function () {
    if (Date.now() - lastRefresh >= PERIOD_MS) {
      refresh();
    }
  }, 5000);

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && Date.now() - lastRefresh >= PERIOD_MS) {
      refresh();
    }
  });
}());
