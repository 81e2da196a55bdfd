// Spenza dashboard behaviour that plain HTML cannot do: copy buttons. Without JavaScript the
// buttons stay hidden and the text can still be selected by hand. No inline handlers anywhere,
// so the page works under a strict Content-Security-Policy.
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

  document.addEventListener("DOMContentLoaded", function () { reveal(document); });
  // htmx swaps new content in without a page load.
  document.addEventListener("htmx:load", function (event) { reveal(event.target); });
})();
