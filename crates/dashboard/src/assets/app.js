// clicktrail dashboard: small progressive enhancements. Every page works
// without this file; it adds copy buttons, confirmations, the catalog
// search, the event-mapping row editor and the live events feed.
(function () {
  "use strict";

  function copyText(text, button) {
    function done() {
      var old = button.textContent;
      button.textContent = "Copied";
      button.classList.add("copied");
      setTimeout(function () { button.textContent = old; button.classList.remove("copied"); }, 1500);
    }
    function fallback() {
      var ta = document.createElement("textarea");
      ta.value = text;
      ta.setAttribute("readonly", "");
      ta.style.position = "fixed";
      ta.style.opacity = "0";
      document.body.appendChild(ta);
      ta.select();
      try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
      document.body.removeChild(ta);
      done();
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  }

  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (!(t instanceof Element)) return;
    var copy = t.closest("[data-copy]");
    if (copy) {
      var src = document.getElementById(copy.getAttribute("data-copy"));
      if (src) copyText(src.textContent || "", copy);
      return;
    }
    var confirmEl = t.closest("[data-confirm]");
    if (confirmEl && !window.confirm(confirmEl.getAttribute("data-confirm") || "Are you sure?")) {
      ev.preventDefault();
      return;
    }
    var add = t.closest("[data-add-row]");
    if (add) {
      var table = document.getElementById(add.getAttribute("data-add-row"));
      var tpl = document.getElementById(add.getAttribute("data-template"));
      if (table && tpl && "content" in tpl) {
        var body = table.querySelector("tbody") || table;
        body.appendChild(tpl.content.cloneNode(true));
      }
      ev.preventDefault();
      return;
    }
    var del = t.closest("[data-remove-row]");
    if (del) {
      var row = del.closest("tr");
      if (row) row.remove();
      ev.preventDefault();
    }
  });

  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t instanceof HTMLSelectElement && t.hasAttribute("data-autosubmit") && t.form) {
      t.form.submit();
    }
  });

  // Catalog search: filter the cards by their name, group and description.
  var search = document.querySelector("[data-filter]");
  if (search) {
    var cards = document.querySelectorAll(search.getAttribute("data-filter"));
    var empty = document.getElementById("no-match");
    var apply = function () {
      var q = search.value.trim().toLowerCase();
      var shown = 0;
      cards.forEach(function (c) {
        var hit = !q || (c.getAttribute("data-search") || "").indexOf(q) !== -1;
        c.hidden = !hit;
        if (hit) shown++;
      });
      if (empty) empty.hidden = shown !== 0;
    };
    search.addEventListener("input", apply);
    apply();
  }

  // Live events: poll the property's feed and prepend new rows.
  var live = document.querySelector("[data-live]");
  if (live) {
    var url = live.getAttribute("data-live");
    var after = live.getAttribute("data-after") || "0";
    var body = live.querySelector("tbody");
    var status = document.getElementById("live-status");
    var paused = false;
    var toggle = document.getElementById("live-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        paused = !paused;
        toggle.textContent = paused ? "Resume" : "Pause";
      });
    }
    var cell = function (tr, text, cls) {
      var td = document.createElement("td");
      td.textContent = text == null ? "" : String(text);
      if (cls) td.className = cls;
      tr.appendChild(td);
    };
    var poll = function () {
      if (paused || document.hidden) { setTimeout(poll, 2000); return; }
      fetch(url + "?after=" + encodeURIComponent(after), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && Array.isArray(data.events)) {
            if (data.cursor) after = data.cursor;
            for (var i = data.events.length - 1; i >= 0; i--) {
              var e = data.events[i];
              var tr = document.createElement("tr");
              tr.className = "fresh";
              cell(tr, e.time);
              cell(tr, e.kind);
              cell(tr, e.name);
              cell(tr, e.detail, "key");
              cell(tr, e.source);
              body.insertBefore(tr, body.firstChild);
              setTimeout(function (row) { return function () { row.className = ""; }; }(tr), 4000);
            }
            while (body.children.length > 200) body.removeChild(body.lastChild);
            var placeholder = document.getElementById("live-empty");
            if (placeholder && data.events.length) placeholder.remove();
            if (status) status.textContent = "Updated " + new Date().toLocaleTimeString();
          }
          setTimeout(poll, 2000);
        })
        .catch(function () {
          if (status) status.textContent = "Connection lost; retrying…";
          setTimeout(poll, 5000);
        });
    };
    setTimeout(poll, 1000);
  }
})();
