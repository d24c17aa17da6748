// crmsync console: a little plain JavaScript, no framework. Every page works without it;
// it only adds conveniences.
(function () {
  "use strict";

  // A one-time link carries its token in the fragment (never sent to the server): put it
  // into the set-password form.
  document.querySelectorAll("input[data-from-fragment]").forEach(function (input) {
    var token = window.location.hash.replace(/^#/, "");
    if (token && !input.value) {
      input.value = decodeURIComponent(token);
      history.replaceState(null, "", window.location.pathname);
    }
  });

  // Forms that change many things ask first.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });

  // Filters apply when chosen.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  document.querySelectorAll("input[data-select-on-focus]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });

  // Live parts of a page (health, runs) refresh themselves: the same page is fetched and
  // the element with the same id swapped in, unless the operator is typing in it.
  document.querySelectorAll("[data-refresh]").forEach(function (element) {
    var seconds = parseInt(element.getAttribute("data-refresh"), 10) || 15;
    window.setInterval(function () {
      if (document.hidden || element.contains(document.activeElement)) {
        return;
      }
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Console-Refresh": "1" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(element.id);
          if (fresh) { element.innerHTML = fresh.innerHTML; }
        })
        .catch(function () { /* offline for a moment: try again next time */ });
    }, seconds * 1000);
  });
})();
