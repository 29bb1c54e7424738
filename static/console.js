// The serial console (templates/console_panel.html): xterm.js on Fogmachine's own WebSocket.
// Bytes from the guest arrive as binary messages and go to the terminal as they are; what the user
// types goes back as text. Close codes (fogmachine/web/console/socket.py): 4000 + an HTTP status for
// an error (4409: another session has the console), 4001 the login session ended, 4100 taken over,
// 4101 idle, 4102 ended by the host, 1001 the server stopped.
"use strict";

(function () {
  var panel = document.getElementById("serial-console");
  var section = document.getElementById("consoles");
  if (!panel || !section || typeof window.Terminal !== "function") { return; }
  var guestId = section.getAttribute("data-guest-id");
  var openBtn = document.getElementById("serial-open");
  var takeBtn = document.getElementById("serial-takeover");
  var closeBtn = document.getElementById("serial-close");
  var status = document.getElementById("serial-status");
  var box = document.getElementById("serial-terminal");
  var term = null, fit = null, socket = null;

  function say(state, text) {
    status.setAttribute("data-state", state);
    status.textContent = text;
  }

  function ensureTerminal() {
    if (term) { return; }
    box.hidden = false;
    term = new window.Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 2000 });
    if (window.FitAddon && window.FitAddon.FitAddon) {
      fit = new window.FitAddon.FitAddon();
      term.loadAddon(fit);
    }
    term.open(box);
    if (fit) { fit.fit(); }
    window.addEventListener("resize", function () { if (fit) { fit.fit(); } });
    term.onData(function (data) {
      if (socket && socket.readyState === WebSocket.OPEN) { socket.send(data); }
    });
    window.fmSerialTerminal = term;  // for the browser tests: read what the terminal shows
  }

  function why(event) {
    if (event.code === 4409) { return "Another session has this console open."; }
    if (event.code === 4001) { return "Your login session ended: log in again."; }
    if (event.code === 1001) { return "The server is restarting: open the console again in a moment."; }
    if (event.code === 4100) { return "Taken over in another window: " + event.reason; }
    if (event.code === 4101) { return "Closed: " + event.reason; }
    if (event.code === 4102) { return "The console ended: " + event.reason; }
    if (event.code > 4000 && event.code < 4600) { return "Refused: " + (event.reason || "error " + (event.code - 4000)); }
    return "Disconnected.";
  }

  function connect(takeOver) {
    if (socket) { socket.close(); }
    ensureTerminal();
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    var url = scheme + "//" + window.location.host + "/guests/" + guestId + "/console/serial" +
      (takeOver ? "?takeover=1" : "");
    var ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    socket = ws;
    say("connecting", "Connecting…");
    openBtn.hidden = true;
    takeBtn.hidden = true;
    ws.onopen = function () {
      say("open", "Connected. Press Enter for a prompt.");
      closeBtn.hidden = false;
      term.focus();
    };
    ws.onmessage = function (event) {
      term.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
    };
    ws.onclose = function (event) {
      if (socket !== ws) { return; }
      socket = null;
      closeBtn.hidden = true;
      openBtn.hidden = false;
      takeBtn.hidden = event.code !== 4409 && event.code !== 4100;
      say(event.code === 4409 ? "busy" : "closed", why(event));
    };
  }

  openBtn.addEventListener("click", function () { connect(false); });
  takeBtn.addEventListener("click", function () { connect(true); });
  closeBtn.addEventListener("click", function () { if (socket) { socket.close(1000); } });
})();
