// The environment page (/environments/ID): its sentence, reason, step, tier states and lease follow the
// environment without a reload. The live feed (live.js) speaks of guests: when a message names one of this
// page's guests (or a new snapshot arrives), ask /environments/ID/summary and put its text in place; live.js
// itself updates the guests' rows. While the environment may move on with no guest changing (provisioning,
// or every guest retired and the environment about to be: "following"), ask again every FOLLOW_MS as well.
// Plain JS, no dependencies; only text is put in place, never markup.
"use strict";

(function () {
  var page = document.querySelector("[data-environment-page]");
  if (!page) { return; }
  var envId = page.getAttribute("data-environment-page");
  var FOLLOW_MS = 2000;
  var mine = {};
  (page.getAttribute("data-guest-ids") || "").split(" ").forEach(function (id) { if (id) { mine[id] = true; } });
  var following = page.getAttribute("data-following") === "yes";
  var asking = false, askAgain = false, timer = null;

  function byId(id) { return document.getElementById(id); }

  function badge(el, word) {
    if (!el) { return; }
    el.textContent = word;
    el.className = "step step-" + word;
  }

  function apply(s) {
    var sentence = byId("env-sentence");
    sentence.textContent = s.sentence;
    sentence.className = "status-sentence step-" + s.step;
    byId("env-reason-text").textContent = s.reason || "";
    byId("env-reason").hidden = !s.reason;
    badge(byId("env-step"), s.step);
    (s.tiers || []).forEach(function (t) {
      badge(page.querySelector('[data-tier-state="' + t.index + '"]'), t.state);
      var rung = page.querySelector('li[data-tier="' + t.index + '"]');
      if (rung) { rung.className = "tier tier-" + t.state; }
    });
    var expires = byId("env-expires-text"), left = page.querySelector("#env-lease .timeleft");
    if (expires && s.expires_at) { expires.textContent = s.expires_text; }
    if (left && s.expires_at) { left.setAttribute("data-expires", s.expires_at); }
    if (s.retired && byId("env-actions")) { byId("env-actions").hidden = true; }
    if (window.fmRefreshTimes) { window.fmRefreshTimes(page); }
    page.setAttribute("data-step", s.step);
    following = Boolean(s.following);
  }

  function later() {
    if (timer) { window.clearTimeout(timer); timer = null; }
    if (following) { timer = window.setTimeout(ask, FOLLOW_MS); }
  }

  // One question at a time; news that arrives meanwhile asks once more after it.
  function ask() {
    if (asking) { askAgain = true; return; }
    asking = true;
    fetch("/environments/" + encodeURIComponent(envId) + "/summary",
          {credentials: "same-origin", cache: "no-store", headers: {"Accept": "application/json"}})
      .then(function (r) {
        var json = (r.headers.get("Content-Type") || "").indexOf("application/json") === 0;
        return r.ok && json ? r.json() : null;  // a login page after the session ended is no summary
      })
      .then(function (s) { if (s && String(s.id) === envId) { apply(s); } })
      .catch(function () { /* the server is away: live.js says so; the next message asks again */ })
      .then(function () {
        asking = false;
        if (askAgain) { askAgain = false; ask(); } else { later(); }
      });
  }

  document.addEventListener("fm:live", function (event) {
    var message = event.detail || {};
    if (message.type === "snapshot") { ask(); return; }
    var ours = (message.guests || []).some(function (g) { return mine[String(g.id)]; }) ||
               (message.gone || []).some(function (id) { return mine[String(id)]; });
    if (ours) { ask(); }
  });
  later();
})();
