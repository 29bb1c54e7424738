// The graphical console (templates/console_panel.html): noVNC over Fogmachine's WebSocket relay.
// A one-time ticket first (POST with the page's XSRF token): it opens the relay once, from this login
// session, and comes with the guest's VNC password, which noVNC answers the VNC server's challenge with.
import RFB from "/static/vendor/novnc/core/rfb.js";

const section = document.getElementById("consoles");
const openBtn = document.getElementById("vnc-open");
const closeBtn = document.getElementById("vnc-close");
const status = document.getElementById("vnc-status");
const screen = document.getElementById("vnc-screen");
let rfb = null;

function say(state, text) {
  status.setAttribute("data-state", state);
  status.textContent = text;
}

function xsrfToken() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("_xsrf="));
  return found ? decodeURIComponent(found.slice(6)) : "";
}

async function open() {
  const guestId = section.getAttribute("data-guest-id");
  say("connecting", "Connecting…");
  openBtn.hidden = true;
  let answer;
  try {
    const reply = await fetch(`/guests/${guestId}/console/vnc-ticket`, {
      method: "POST", credentials: "same-origin", headers: { "X-XSRFToken": xsrfToken() },
    });
    answer = await reply.json();
    if (!reply.ok) { throw new Error(answer.error ? answer.error.message : `error ${reply.status}`); }
  } catch (err) {
    say("closed", `Refused: ${err.message}`);
    openBtn.hidden = false;
    return;
  }
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  screen.hidden = false;
  const options = { wsProtocols: ["binary"], credentials: { password: answer.password || "" } };
  const session = new RFB(screen, `${scheme}//${window.location.host}${answer.url}`, options);
  session.scaleViewport = true;
  session.viewOnly = false;
  rfb = session;
  session.addEventListener("connect", () => {
    say("open", "Connected.");
    closeBtn.hidden = false;
  });
  session.addEventListener("disconnect", (event) => {
    if (rfb !== session) { return; }
    rfb = null;
    closeBtn.hidden = true;
    openBtn.hidden = false;
    say("closed", event.detail.clean ? "Disconnected." : "The connection to the graphical console was lost.");
  });
  session.addEventListener("securityfailure", (event) => {
    say("closed", `The VNC server refused the password: ${event.detail.reason || event.detail.status}`);
  });
  session.addEventListener("credentialsrequired", () => {
    say("closed", "The VNC server asks for a password this guest does not have.");
    session.disconnect();
  });
}

if (section && openBtn) {
  openBtn.addEventListener("click", open);
  closeBtn.addEventListener("click", () => { if (rfb) { rfb.disconnect(); } });
}
