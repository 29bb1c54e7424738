// Live updates: the server pushes guest and host changes over a WebSocket (/live);
// this script applies them to whatever rows the page shows, and on a guest's own page (/guests/ID, whose
// socket is /live?guest=ID) to its sentence, reason, address, lease, steps and actions. Plain JS, no dependencies.
"use strict";

(function () {
  var me = document.body.getAttribute("data-user");
  var status = document.getElementById("live-status");
  var FIRST_RETRY_MS = 500, MAX_RETRY_MS = 15000;
  var SESSION_ENDED = 4001;  // the server's word that this session is over (fogmachine/web/live/feed.py)
  var retry = FIRST_RETRY_MS;
  var loading = {};
  // The last word the server sent on each guest: a row fetched for a guest (insertGuest) may come back after
  // newer messages about it went by with no row to land on, so it takes the newest, not the one that asked.
  var latest = {};

  function setStatus(text, ok) {
    if (!status) { return; }
    status.hidden = false;
    status.textContent = text;
    status.className = "live-status " + (ok ? "on" : "off");
  }

  function setText(root, field, value) {
    root.querySelectorAll('[data-field="' + field + '"]').forEach(function (el) {
      if (el.textContent !== value) { el.textContent = value; }
    });
  }

  // Rows are table rows: the guest page's consoles panel carries a data-guest-id too, and is no row.
  function applyGuest(g) {
    var rows = document.querySelectorAll('tr[data-guest-id="' + g.id + '"]');
    rows.forEach(function (row) {
      var before = row.getAttribute("data-state") + "/" + row.getAttribute("data-step");
      row.querySelectorAll('[data-field="state"]').forEach(function (el) {
        el.textContent = g.state; el.className = "state state-" + g.state;
      });
      row.querySelectorAll('[data-field="step"]').forEach(function (el) {
        el.textContent = g.step; el.className = "step step-" + g.step;
      });
      setText(row, "step_reason", g.step_reason || "");  // always: why it is where it is, not only why it failed
      setText(row, "ip", g.ip || "—");
      setText(row, "hostname", g.hostname || "");
      setText(row, "host", g.host || "—");
      setText(row, "expires_text", g.expires_text || "");
      row.querySelectorAll(".timeleft").forEach(function (el) {
        if (g.expires_at) { el.setAttribute("data-expires", g.expires_at); }
      });
      row.querySelectorAll("[data-action]").forEach(function (form) {
        var allowed = (g.actions || []).indexOf(form.getAttribute("data-action")) >= 0;
        form.hidden = !allowed;
        form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
      });
      row.setAttribute("data-state", g.state);
      row.setAttribute("data-step", g.step);
      if (before !== "null/null" && before !== g.state + "/" + g.step) {
        row.classList.remove("flash-row"); void row.offsetWidth; row.classList.add("flash-row");
      }
    });
    if (window.fmRefreshTimes) { rows.forEach(function (row) { window.fmRefreshTimes(row); }); }
    return rows.length;
  }

  function removeGuest(id) {
    document.querySelectorAll('tr[data-guest-id="' + id + '"]').forEach(function (row) {
      var list = row.closest("[data-live-list]");
      row.remove();
      if (list) { showEmpty(list); }
    });
  }

  function showEmpty(list) {
    var any = list.querySelector("[data-guest-id]") !== null;
    list.hidden = !any;
    document.querySelectorAll('[data-empty-for="' + list.getAttribute("data-live-list") + '"]').forEach(function (p) {
      p.hidden = any;
    });
  }

  // A guest this page lists but has no row for yet: ask the server for the row (one template, one look).
  function insertGuest(g, type) {
    document.querySelectorAll("[data-live-list]").forEach(function (list) {
      var view = list.getAttribute("data-live-list");
      if ((view === "mine" || view === "reservations") && g.owner !== me) { return; }
      // Only a list that knows where a guest goes takes one (web/pages/guestlist.py, takes_new_rows): on one
      // page, unfiltered, in the order guests are made, any it lacks ("all"); on the last of several, only a
      // guest newer than every row, from an update ("new"). A filtered or sorted list changes on reload.
      var mode = list.getAttribute("data-insert");
      if (mode !== "all" && mode !== "new") { return; }
      if (mode === "new" && (type !== "update" || Array.prototype.some.call(list.tBodies[0].rows, function (r) {
        return Number(r.getAttribute("data-guest-id")) > g.id;
      }))) { return; }
      var key = view + ":" + g.id;
      if (loading[key] || list.querySelector('[data-guest-id="' + g.id + '"]')) { return; }
      loading[key] = true;
      fetch("/guests/" + g.id + "/row?view=" + view, {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (html) {
          delete loading[key];
          var now = latest[g.id] || g;
          if (!html || now.step === "retired" || list.querySelector('[data-guest-id="' + g.id + '"]')) { return; }
          var tbody = list.tBodies[0];
          var holder = document.createElement("tbody");
          holder.innerHTML = html.trim();
          var row = holder.firstElementChild;
          if (!row) { return; }
          var after = Array.prototype.find.call(tbody.rows, function (r) {
            return Number(r.getAttribute("data-guest-id")) > g.id;
          });
          tbody.insertBefore(row, after || null);
          showEmpty(list);
          applyGuest(now);
          row.classList.add("flash-row");
        })
        .catch(function () { delete loading[key]; });
    });
  }

  function applyHost(h) {
    document.querySelectorAll('[data-host="' + h.name + '"]').forEach(function (el) {
      el.querySelectorAll('[data-field="display_state"]').forEach(function (s) {
        s.textContent = h.display_state; s.className = "state state-" + h.display_state;
      });
      setText(el, "state_reason", (h.display_state === "down" || h.display_state === "unknown") ? (h.state_reason || "") : "");
      setText(el, "guest_count", String(h.guest_count));
      setText(el, "memory_text", mib(h.free_memory_mb) + " free of " + mib(h.total_memory_mb));
      setText(el, "cpu_text", h.vcpus_free + " free of " + h.vcpu_capacity + " (" + h.cpus + " CPUs)");
      [["memory_used_pct", h.memory_used_pct], ["cpu_used_pct", h.cpu_used_pct]].forEach(function (pair) {
        el.querySelectorAll('[data-bar="' + pair[0] + '"]').forEach(function (bar) {
          bar.style.width = pair[1] + "%";
          bar.classList.toggle("hot", pair[1] >= 90);
        });
      });
    });
  }

  // The overview's totals, recomputed from every host the page has heard of (same rule as the server:
  // only enabled hosts that are up take guests).
  var knownHosts = {};
  function applyCapacity() {
    var box = document.querySelector("[data-capacity]");
    if (!box) { return; }
    var total = 0, usable = 0, memTotal = 0, memFree = 0, vcap = 0, vfree = 0, guests = 0;
    Object.keys(knownHosts).forEach(function (name) {
      var h = knownHosts[name];
      total += 1;
      guests += h.guest_count;
      if (h.display_state !== "up") { return; }
      usable += 1; memTotal += h.total_memory_mb; memFree += h.free_memory_mb;
      vcap += h.vcpu_capacity; vfree += h.vcpus_free;
    });
    var set = function (key, text) { box.querySelectorAll('[data-stat="' + key + '"]').forEach(function (el) { el.textContent = text; }); };
    var bar = function (key, pct) { box.querySelectorAll('[data-stat="' + key + '"]').forEach(function (el) { el.style.width = pct + "%"; }); };
    set("hosts", usable + " / " + total);
    set("memory_free", mib(memFree)); set("memory_total", mib(memTotal));
    set("vcpus_free", String(vfree)); set("vcpu_capacity", String(vcap));
    set("guests", String(guests));
    bar("memory_bar", memTotal ? Math.round(100 * (memTotal - memFree) / memTotal) : 0);
    bar("cpu_bar", vcap ? Math.min(100, Math.round(100 * (vcap - vfree) / vcap)) : 0);
  }

  function mib(value) {
    value = value || 0;
    if (value >= 1024) { return (Math.round(value / 102.4) / 10).toString() + " GiB"; }
    return value + " MiB";
  }

  // Toasts for what happens to my own guests, seen live: a step that changes to ready or failed from
  // what this page knew of it (the rows it was drawn with, then every message since). A guest the page
  // knew nothing of only tells it where things stand: no toast for every ready guest at page load.
  var steps = {};
  document.querySelectorAll('tr[data-guest-id] [data-field="step"]').forEach(function (el) {
    steps[el.closest("[data-guest-id]").getAttribute("data-guest-id")] = el.textContent.trim();
  });

  var toasts = document.getElementById("toasts");
  var baseTitle = document.title;
  var unseen = 0;
  function looking() { return document.visibilityState === "visible" && document.hasFocus(); }
  function showCount() { document.title = unseen ? "(" + unseen + ") " + baseTitle : baseTitle; }
  function seen() { if (unseen && looking()) { unseen = 0; showCount(); } }
  document.addEventListener("visibilitychange", seen);
  window.addEventListener("focus", seen);

  function copyText(text, button) {
    var done = function () { button.textContent = "copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text) && done(); });
    } else if (fallbackCopy(text)) { done(); }
  }
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text; area.setAttribute("readonly", ""); area.className = "visually-hidden";
    document.body.appendChild(area); area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok;
  }

  function toast(kind, text, command) {
    if (!toasts) { return; }
    var box = document.createElement("div");
    box.className = "toast toast-" + kind;
    var words = document.createElement("span");
    words.className = "toast-text";
    words.textContent = text;
    box.appendChild(words);
    if (command) {
      var code = document.createElement("code");
      code.textContent = command;
      words.appendChild(document.createTextNode(": "));
      words.appendChild(code);
      var copy = document.createElement("button");
      copy.type = "button"; copy.className = "toast-copy"; copy.textContent = "copy";
      copy.addEventListener("click", function () { copyText(command, copy); });
      box.appendChild(copy);
    }
    var close = document.createElement("button");
    close.type = "button"; close.className = "toast-close"; close.textContent = "×";
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", function () { box.remove(); });
    box.appendChild(close);
    toasts.appendChild(box);
    if (!looking()) { unseen += 1; showCount(); }
  }

  function noteStep(g) {
    var id = String(g.id);
    var before = steps[id];
    steps[id] = g.step;
    if (g.step === "ready" || g.step === "failed") {
      // The checkout's "is on its way" says nothing true any more (even if the guest got there first).
      document.querySelectorAll('.flash[data-guest="' + id + '"]').forEach(function (f) { f.remove(); });
    }
    if (before === undefined || before === g.step || g.owner !== me) { return; }
    if (g.step === "ready") {
      var address = g.ip || g.hostname;
      toast("ok", g.name + " is ready", address ? "ssh " + g.owner + "@" + address : "");
    } else if (g.step === "failed") {
      toast("error", g.name + " failed: " + (g.step_reason || "no reason given"), "");
    }
  }

  // The guest page. Its parts come as the server renders them (fogmachine/web/live/payloads.py, page_payload):
  // after each snapshot and whenever they change. Only text is put in place, never markup.
  var guestPage = document.querySelector("[data-guest-page]");
  var pageId = guestPage ? guestPage.getAttribute("data-guest-page") : "";
  if (guestPage && guestPage.querySelector('[data-page="step"]')) {  // its toasts, as a row's (noteStep)
    steps[pageId] = guestPage.querySelector('[data-page="step"]').textContent.trim();
  }

  function byId(id) { return document.getElementById(id); }
  function setPage(field, value) {
    guestPage.querySelectorAll('[data-page="' + field + '"]').forEach(function (el) {
      if (el.textContent !== value) { el.textContent = value; }
    });
  }
  function cell(tr, label, text, className) {
    var td = document.createElement("td");
    td.setAttribute("data-label", label);
    if (className) { td.className = className; }
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function applySteps(done) {
    var body = byId("steps-body");
    if (!body) { return; }
    var rows = document.createDocumentFragment();
    done.forEach(function (s) {
      var tr = document.createElement("tr");
      var badge = document.createElement("span");
      badge.className = "step step-" + s.step; badge.textContent = s.step;
      cell(tr, "Step", "").appendChild(badge);
      cell(tr, "Began", s.at_text, "nowrap");
      cell(tr, "Took", s.took_text);
      cell(tr, "Reason", s.reason || "—", "reason");
      rows.appendChild(tr);
    });
    body.textContent = "";
    body.appendChild(rows);
    body.closest("table").hidden = done.length === 0;
    byId("no-steps").hidden = done.length !== 0;
  }

  function applyLease(p) {
    var term = byId("lease-term"), lease = byId("lease");
    if (!term || !lease) { return; }
    lease.textContent = "";
    if (p.retired_at) { term.textContent = "Retired"; lease.textContent = p.retired_text; return; }
    term.textContent = "Lease ends";
    if (!p.expires_at) { lease.textContent = "never"; return; }
    var left = document.createElement("span");
    left.className = "timeleft"; left.setAttribute("data-expires", p.expires_at);
    left.textContent = window.fmTimeLeft ? window.fmTimeLeft(p.expires_at) : "";
    lease.appendChild(document.createTextNode(p.expires_text + " ("));
    lease.appendChild(left);
    lease.appendChild(document.createTextNode(" left)"));
  }

  function setSentence(text, step, reason) {
    var sentence = byId("status-sentence");
    sentence.textContent = text;
    sentence.className = "status-sentence step-" + step;
    var why = byId("status-reason");
    why.textContent = "";
    var strong = document.createElement("strong");
    strong.textContent = "Reason:";
    why.appendChild(strong);
    why.appendChild(document.createTextNode(" " + reason));
    why.hidden = !reason;
  }

  // Whatever can no longer be done to a guest that is retired or gone: its actions and its consoles.
  function endActions() {
    ["actions", "consoles-card"].forEach(function (id) { if (byId(id)) { byId(id).hidden = true; } });
  }

  function applyPage(p) {
    if (!guestPage || String(p.id) !== pageId) { return; }
    setSentence(p.sentence, p.step, p.reason);
    guestPage.querySelectorAll('[data-page="state"]').forEach(function (el) {
      el.textContent = p.state; el.className = "state state-" + p.state;
    });
    guestPage.querySelectorAll('[data-page="step"]').forEach(function (el) {
      el.textContent = p.step; el.className = "step step-" + p.step;
    });
    setPage("host", p.host || "—");
    setPage("ip", p.ip || "—");
    setPage("hostname", p.hostname || "—");
    byId("ssh-line").textContent = p.ssh;
    byId("ssh").hidden = !p.ssh;
    byId("no-address").hidden = Boolean(p.ssh) || p.retired;
    applyLease(p);
    applySteps(p.steps || []);
    var actions = byId("actions");
    if (actions) {
      actions.querySelectorAll("form[data-action]").forEach(function (form) {
        form.hidden = (p.actions || []).indexOf(form.getAttribute("data-action")) < 0;
        form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
      });
      actions.hidden = !(p.actions || []).length;
    }
    if (p.retired) { endActions(); }
    guestPage.setAttribute("data-guest-retired", p.retired ? "yes" : "no");
    if (window.fmRefreshTimes) { window.fmRefreshTimes(guestPage); }
  }

  // Deleted outright (or no longer the user's to see): the page says so; a page message may still follow
  // (a retired guest is not in a snapshot, its page comes right after it).
  function pageGone() {
    setSentence("Deleted: this guest is no longer in Fogmachine", "retired", "");
    endActions();
  }

  function apply(message) {
    if (message.type === "page") {
      applyPage(message.guest);
      document.dispatchEvent(new CustomEvent("fm:live", {detail: message}));
      return;
    }
    if (message.type === "snapshot") { knownHosts = {}; }
    (message.hosts || []).forEach(function (h) { knownHosts[h.name] = h; applyHost(h); });
    if ((message.hosts || []).length) { applyCapacity(); }
    var seenIds = {};
    (message.guests || []).forEach(function (g) {
      seenIds[g.id] = true;
      latest[g.id] = g;
      noteStep(g);
      if (g.step === "retired") { removeGuest(g.id); return; }
      applyGuest(g);
      insertGuest(g, message.type);
    });
    (message.gone || []).forEach(function (id) {
      latest[id] = {id: id, step: "retired"};
      removeGuest(id);
      if (String(id) === pageId) { pageGone(); }
    });
    if (message.type === "snapshot") {
      if (pageId && !seenIds[pageId] && guestPage.getAttribute("data-guest-retired") !== "yes") { pageGone(); }
      // Rows for guests that ended while this page was not listening.
      document.querySelectorAll("[data-live-list] [data-guest-id]").forEach(function (row) {
        if (!seenIds[row.getAttribute("data-guest-id")]) { removeGuest(row.getAttribute("data-guest-id")); }
      });
    }
    document.dispatchEvent(new CustomEvent("fm:live", {detail: message}));
  }

  function sessionEnded() {
    if (!status) { return; }
    setStatus("session ended: ", false);
    var link = document.createElement("a");
    link.href = "/login"; link.textContent = "log in";
    status.appendChild(link);
  }

  function reconnectLater() {
    setStatus("○ reconnecting…", false);
    var wait = retry / 2 + Math.random() * retry / 2;  // jitter: a restarted server is not hit by every page at once
    retry = Math.min(retry * 2, MAX_RETRY_MS);
    window.setTimeout(connect, wait);
  }

  // A refused handshake shows no status to the script: ask /live as a plain GET whether the session holds
  // (401: it is over; anything else, or no answer: the server is away, try again).
  function checkSession() {
    fetch("/live", {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (r.status === 401) { sessionEnded(); } else { reconnectLater(); } })
      .catch(reconnectLater);
  }

  function connect() {
    var opened = false;
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/live" +
                           (pageId ? "?guest=" + encodeURIComponent(pageId) : ""));
    ws.onopen = function () { opened = true; retry = FIRST_RETRY_MS; setStatus("● live", true); };
    ws.onmessage = function (event) {
      try { apply(JSON.parse(event.data)); } catch (e) { if (window.console) { console.error(e); } }
    };
    ws.onclose = function (event) {
      if (event.code === SESSION_ENDED) { sessionEnded(); return; }
      // 1001: the server is going away (a restart); 1006: the connection broke. The session may well hold.
      if (opened) { reconnectLater(); } else { checkSession(); }
    };
  }
  if (document.body.getAttribute("data-live") === "on" && "WebSocket" in window) { connect(); }
})();
