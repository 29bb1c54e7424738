// Fogmachine pages: confirmations, refused fields, menus, copy buttons, time left, the checkout preview. Plain JS, no dependencies.
"use strict";

(function () {
  // Forms with data-confirm ask first; the server also asks (confirm=yes) when script is off.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question) {
      if (!window.confirm(question)) { event.preventDefault(); return; }
      var field = form.querySelector("input[name=confirm]");
      if (field) { field.value = "yes"; }
    }
    // One press, one request: a second click while the first is on its way does nothing.
    var buttons = form.querySelectorAll("button[type=submit]");
    window.setTimeout(function () { buttons.forEach(function (b) { b.disabled = true; }); }, 0);
  });

  // A form refused by the server comes back with its field marked (aria-invalid) and the message under it,
  // or the message at the top of the form when no field is at fault: open the menu it is in and put the
  // cursor on that field (or the form's own first field, else the message). Autofocus does it without script.
  var invalid = document.querySelector("[aria-invalid=true][autofocus]") || document.querySelector("[aria-invalid=true]");
  var said = document.querySelector(".form-error");
  var focus = invalid || (said && ((said.closest("form") && said.closest("form").querySelector("[autofocus]")) || said));
  if (focus) {
    var menu = focus.closest("details");
    if (menu) { menu.open = true; }
    focus.focus();
  }
  // A form shown again in answer to its POST (the login keeps its 401; a form too big to carry to its page):
  // the history gets the page's own address instead, so Back and reload load it, never resend the form.
  var formUrl = document.body.getAttribute("data-form-url");
  if (formUrl && window.history.replaceState) { window.history.replaceState(null, "", formUrl); }

  // "More" menus: one open at a time; Escape closes the open one and gives the focus back to its button.
  document.addEventListener("toggle", function (event) {
    var opened = event.target;
    if (!opened.matches || !opened.matches("details.more") || !opened.open) { return; }
    document.querySelectorAll("details.more[open]").forEach(function (d) { if (d !== opened) { d.open = false; } });
  }, true);
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    var open = document.activeElement && document.activeElement.closest && document.activeElement.closest("details.more[open]");
    if (open) { open.open = false; open.querySelector("summary").focus(); }
  });

  // Copy buttons (the ssh line): shown only where the clipboard can be written; the text stays selectable.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    if (!navigator.clipboard || !window.isSecureContext) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    var said = document.querySelector('[data-copied-for="' + button.getAttribute("data-copy") + '"]');
    if (!source) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent.trim()).then(
        function () { if (said) { said.textContent = "Copied."; } },
        function () { if (said) { said.textContent = "Could not copy: select the line instead."; } });
    });
  });

  // Time left, recomputed in the browser from the expiry the server gave.
  function timeLeft(iso) {
    var ms = Date.parse(iso) - Date.now();
    if (isNaN(ms)) { return ""; }
    if (ms <= 0) { return "expired"; }
    var minutes = Math.floor(ms / 60000), days = Math.floor(minutes / 1440), hours = Math.floor((minutes % 1440) / 60);
    if (days) { return days + " d " + hours + " h"; }
    if (hours) { return hours + " h " + (minutes % 60) + " min"; }
    return Math.max(minutes, 1) + " min";
  }
  // In the lists (data-soon-s, web/pages/view.py EXPIRING_SOON) a lease that ends soon says so in words.
  function refreshTimes(root) {
    (root || document).querySelectorAll(".timeleft[data-expires]").forEach(function (el) {
      var text = timeLeft(el.getAttribute("data-expires"));
      if (!text) { return; }
      var soonMs = Number(el.getAttribute("data-soon-s") || 0) * 1000;
      var soon = soonMs > 0 && text !== "expired" && Date.parse(el.getAttribute("data-expires")) - Date.now() <= soonMs;
      el.textContent = soon ? "expires in " + text : text;
      el.classList.toggle("expired", text === "expired");
      el.classList.toggle("soon", soon);
    });
  }
  window.fmTimeLeft = timeLeft;
  window.fmRefreshTimes = refreshTimes;
  refreshTimes();
  window.setInterval(refreshTimes, 30000);

  // Checkout: say which host would take the chosen target, or why none can.
  var form = document.getElementById("checkout-form");
  var box = document.getElementById("preview");
  if (form && box) {
    var seq = 0;
    var render = function (answer) {
      box.textContent = "";
      var p = document.createElement("p");
      p.className = "preview-answer";
      if (answer.fits) {
        p.appendChild(document.createTextNode("Host "));
        var strong = document.createElement("strong");
        strong.textContent = answer.host;
        p.appendChild(strong);
        p.appendChild(document.createTextNode(" would take it."));
      } else {
        p.textContent = answer.reason || "No host can take it now.";
      }
      box.appendChild(p);
      if (answer.hosts && answer.hosts.length) {
        var ul = document.createElement("ul");
        ul.className = "preview-hosts small";
        answer.hosts.forEach(function (h) {
          var li = document.createElement("li");
          li.className = h.fits ? "fits" : "nofit";
          var name = document.createElement("strong");
          name.textContent = h.name;
          li.appendChild(name);
          li.appendChild(document.createTextNode(": " + (h.fits ? "room for it" : h.reason) + " "));
          var free = document.createElement("span");
          free.className = "muted";
          free.textContent = "(" + mib(h.free_ram_mb) + ", " + h.free_vcpus + " vCPUs free)";
          li.appendChild(free);
          ul.appendChild(li);
        });
        box.appendChild(ul);
      }
      box.setAttribute("data-state", answer.fits ? "ok" : "no");
    };
    var mib = function (value) {
      value = value || 0;
      return value >= 1024 ? (Math.round(value / 102.4) / 10) + " GiB" : value + " MiB";
    };
    var fieldset = form.querySelector("fieldset.catalog");
    // The API's refusal (its JSON error shape), said under the profiles it is about.
    var refuse = function (status, body) {
      var error = (body && body.error) || {};
      var p = document.createElement("p");
      p.className = "preview-answer";
      p.textContent = status === 401 ? "Your session has ended: log in again to see which host would take it."
        : error.message || "The server refused the preview (" + status + ").";
      box.textContent = "";
      box.appendChild(p);
      box.setAttribute("data-state", "no");
      if (fieldset && (error.details || {}).field === "target") { fieldset.classList.add("invalid"); }
    };
    form.addEventListener("change", function (event) {
      if (event.target.name !== "target") { return; }
      var mine = ++seq;
      box.setAttribute("data-state", "busy");
      box.textContent = "Looking for a host…";
      // The API's placement preview; a GET, so the session cookie alone is enough (no XSRF token).
      fetch("/api/v1/catalog/placement?target=" + encodeURIComponent(event.target.value),
            {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) {
          return r.json().then(function (body) { return {ok: r.ok, status: r.status, body: body}; });
        })
        .then(function (reply) {
          if (mine !== seq) { return; }
          if (fieldset) { fieldset.classList.remove("invalid"); }
          if (reply.ok) { render(reply.body); } else { refuse(reply.status, reply.body); }
        })
        .catch(function () {
          if (mine !== seq) { return; }
          box.setAttribute("data-state", "no");
          box.textContent = "Could not ask the server; the checkout will still say if no host can take it.";
        });
    });
  }

  // The phone menu: a real button (keyboard, screen readers) that says whether the menu is open.
  // Without script the button stays hidden and the menu open; at desktop width the CSS ignores both.
  var top = document.querySelector("header.top");
  var menuButton = top && top.querySelector(".nav-button");
  if (menuButton) {
    var setOpen = function (open) {
      top.classList.toggle("open", open);
      menuButton.setAttribute("aria-expanded", open ? "true" : "false");
    };
    top.classList.add("folding");
    menuButton.hidden = false;
    setOpen(false);
    menuButton.addEventListener("click", function () {
      setOpen(menuButton.getAttribute("aria-expanded") !== "true");
    });
    top.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && top.classList.contains("open")) { setOpen(false); menuButton.focus(); }
    });
  }

  // Copy buttons (the new API token, its curl line): the text of the element named by data-copy.
  // Without script they stay hidden; the text is there to select.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    var label = button.textContent;
    var said = function (text) {
      button.textContent = text;
      window.setTimeout(function () { button.textContent = label; }, 2000);
    };
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = source.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { said("Copied"); },
                                                 function () { said("Select it and copy"); });
        return;
      }
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      said(document.execCommand && document.execCommand("copy") ? "Copied" : "Press Ctrl+C");
    });
  });
})();
