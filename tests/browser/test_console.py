"""The consoles in Chromium on the real tiny guest, directly and through nginx with TLS.

The serial console: type ``echo fm-<random>`` into xterm.js and read the line back from the terminal.
The graphical console: noVNC draws the guest's screen (``console=tty0`` puts the kernel's text on it);
the canvas's pixels are read back and must not be one colour. Both again through Debian's nginx on a
self-signed certificate, configured as the sample site ``docs/nginx-fogmachine.conf`` (wss:// on the
proxy's port, same origin, no extra configuration). No Content-Security-Policy violation anywhere.
Another user gets a 404 and a refused socket; an anonymous browser the login page and a refused socket.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from fogmachine.db.models import AuditEvent
from tests.support import nginx
from tests.support import realhosts as rh
from tests.web.console.test_realhosts import PREFIX, real_site, tiny_guest
from tests.web.pages.conftest import PASSWORD

pytestmark = pytest.mark.browser
WAIT_MS = 30_000

TERMINAL_TEXT = """() => {
  const term = window.fmSerialTerminal;
  if (!term) { return ""; }
  const buffer = term.buffer.active, lines = [];
  for (let i = 0; i < buffer.length; i++) { lines.push(buffer.getLine(i).translateToString(true)); }
  return lines.join("\\n");
}"""
CANVAS_COLOURS = """() => {
  const canvas = document.querySelector("#vnc-screen canvas");
  if (!canvas || !canvas.width || !canvas.height) { return 0; }
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length && seen.size < 50; i += 4 * 13) {
    seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  return seen.size;
}"""
SOCKET_FATE = """async (path) => {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return await new Promise((resolve) => {
    const ws = new WebSocket(scheme + "//" + location.host + path);
    ws.onopen = () => resolve("opened");
    ws.onclose = (event) => resolve("closed " + event.code);
  });
}"""


async def log_in(page: Any, base: str, username: str) -> None:
    await page.goto(base + "/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form.stack button[type=submit]")
    await page.wait_for_url(base + "/")


async def use_consoles(browser: Any, base: str, gid: int, shoot: Any, label: str) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = await browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    try:
        await log_in(page, base, "alice")
        await page.goto(f"{base}/guests/{gid}/console")

        await page.click("#serial-open")
        await expect(page.locator("#serial-status")).to_have_attribute("data-state", "open")
        await page.click("#serial-terminal")
        for _ in range(60):  # Enter until the guest answers (QEMU notices the console within about 1 s)
            await page.keyboard.press("Enter")
            try:
                await page.wait_for_function(f"() => ({TERMINAL_TEXT})().trim().length > 0", timeout=500)
                break
            except Exception:
                continue
        word = f"fm-{uuid.uuid4().hex[:10]}"
        await page.keyboard.type(f"echo {word}")
        await page.keyboard.press("Enter")
        await page.wait_for_function(f"(word) => ({TERMINAL_TEXT})().split('\\n').some(l => l.trim() === word)",
                                     arg=word, timeout=WAIT_MS)
        await shoot(page, f"console-serial-{label}")
        await page.click("#serial-close")
        await expect(page.locator("#serial-status")).to_have_attribute("data-state", "closed")

        await page.click("#vnc-open")
        await expect(page.locator("#vnc-status")).to_have_attribute("data-state", "open")
        await page.wait_for_function(f"() => ({CANVAS_COLOURS})() > 1", timeout=WAIT_MS)
        await shoot(page, f"console-vnc-{label}")
        await page.click("#vnc-close")
        await expect(page.locator("#vnc-status")).to_have_attribute("data-state", "closed")
        assert problems == [], problems
    finally:
        await context.close()


async def test_the_panel_loads_its_vendored_modules_and_says_why_a_console_is_refused(make_config, start_server,
                                                                                     tmp_path, browser):
    """On a test-driver host (no consoles there): xterm.js and noVNC load from static/vendor/ under the page's
    CSP, and each console's refusal reaches the page as a sentence."""
    from playwright.async_api import expect

    from tests.web.console.conftest import make_console_site

    expect.set_options(timeout=WAIT_MS)  # Playwright's 5 s is short on a busy two-core machine
    site = await make_console_site(make_config, start_server, tmp_path)
    gid = await site.guest("alice", "web1")
    context = await browser.new_context()
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    try:
        await log_in(page, site.srv.base_url, "alice")
        await page.goto(f"{site.srv.base_url}/guests/{gid}/console")
        assert await page.evaluate("typeof window.Terminal") == "function"
        await page.click("#serial-open")
        await expect(page.locator("#serial-status")).to_have_attribute("data-state", "closed")
        await expect(page.locator("#serial-status")).to_contain_text("does not support open the console")
        await page.click("#vnc-open")
        await expect(page.locator("#vnc-status")).to_have_attribute("data-state", "closed")
        await expect(page.locator("#vnc-status")).to_contain_text("not running")
        assert await page.locator("#vnc-open").is_visible()
        assert problems == [] and failed == [], (problems, failed)
    finally:
        await context.close()


@pytest.mark.realhosts
async def test_serial_and_graphical_consoles_direct_and_through_nginx_tls(make_config, start_server, tmp_path,
                                                                          real_hosts, browser, shoot):
    site = await real_site(make_config, start_server, tmp_path, trusted_proxies="127.0.0.1")
    try:
        gid, _ = await tiny_guest(site)
        base = site.srv.base_url
        await use_consoles(browser, base, gid, shoot, "direct")
        with nginx.reverse_proxy(tmp_path / "nginx", site.srv.server.port) as proxy:
            await use_consoles(browser, proxy.https_url, gid, shoot, "nginx-tls")

            # another user: no page, no socket; an anonymous browser: the login page, no socket
            for who in ("bob", None):
                context = await browser.new_context(ignore_https_errors=True)
                page = await context.new_page()
                if who is not None:
                    await log_in(page, proxy.https_url, who)
                reply = await page.goto(f"{proxy.https_url}/guests/{gid}/console")
                if who is None:
                    assert page.url.startswith(f"{proxy.https_url}/login?next=")
                else:
                    assert reply is not None and reply.status == 404
                for path in (f"/guests/{gid}/console/serial", f"/guests/{gid}/console/vnc?ticket=forged"):
                    assert await page.evaluate(SOCKET_FATE, path) == "closed 1006"  # refused at the handshake
                await context.close()
        events = await site.ctx.db.run(lambda s: sorted(e.message.split(",")[0] for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "console.open"))))
        assert events == ["serial console", "serial console", "vnc console", "vnc console"]
    finally:
        rh.remove_domains(PREFIX)
        for log in rh.CONSOLE_DIR.glob(f"{PREFIX}*.log"):
            log.unlink(missing_ok=True)
