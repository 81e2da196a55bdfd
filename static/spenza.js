// Spenza dashboard behaviour that plain HTML cannot do: copy buttons, and a live feed that
// resumes where the page is. Without JavaScript the buttons stay hidden and the text can still
// be selected by hand. No inline handlers anywhere, so the page works under a strict
// Content-Security-Policy.
(function () {
  "use strict";

  function reveal(root) {
    if (!navigator.clipboard) return;
    root.querySelectorAll("[data-copy][hidden]").forEach(function (button) {
      button.hidden = false;
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // The live feed's socket, on every (re)connection, names the newest row the page shows and
  // the rows still in flight: the relay then sends what it missed while it was away (a relay
  // restart, a network blip) before it carries on.
  var IN_FLIGHT = ["pending", "retrying"];
  var MAX_ROWS = 50;

  function resume(url) {
    var parsed = new URL(url, window.location.href);
    var newest = "";
    var inFlight = [];
    document.querySelectorAll("#event-rows [data-event-id]").forEach(function (row) {
      var id = row.getAttribute("data-event-id");
      // Event ids are UUIDv7: in lowercase hex, later sorts after.
      if (id > newest) newest = id;
    });
    // Rows of the log, or the event of an event's page.
    document.querySelectorAll("[data-event-id][data-status]").forEach(function (shown) {
      if (IN_FLIGHT.indexOf(shown.getAttribute("data-status")) >= 0 && inFlight.length < MAX_ROWS) {
        inFlight.push(shown.getAttribute("data-event-id"));
      }
    });
    if (newest) parsed.searchParams.set("after", newest);
    if (inFlight.length) parsed.searchParams.set("rows", inFlight.join(","));
    return parsed.toString();
  }

  if (window.htmx && htmx.createWebSocket) {
    var create = htmx.createWebSocket;
    htmx.createWebSocket = function (url) { return create(resume(url)); };
  }

  document.addEventListener("DOMContentLoaded", function () { reveal(document); });
  // htmx swaps new content in without a page load.
  document.addEventListener("htmx:load", function (event) { reveal(event.target); });
})();
