"""Domain XML for the tiny test guest, and a boot smoke test.

Standalone: stdlib only, plus the ``libvirt`` module for the smoke mode
(imported lazily, so ``tiny_domain_xml`` works without it).

    python tests/infra/tiny_domain.py smoke qemu+tcp://127.0.0.1/system

The guest kernel/initrd come from ``tests/infra/tiny_guest.sh build``
($FM_TEST_STATE/tiny/, default /var/tmp/fogmachine-test/tiny/).
"""

from __future__ import annotations

import http.server
import os
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET

STATE = os.environ.get("FM_TEST_STATE", "/var/tmp/fogmachine-test")
TINY_KERNEL = os.path.join(STATE, "tiny", "vmlinuz")
TINY_INITRD = os.path.join(STATE, "tiny", "initrd.img")
BASE_CMDLINE = "console=tty0 console=ttyS0 panic=-1"  # ttyS0 last: /dev/console, the log


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def tiny_domain_xml(
    name: str,
    kernel: str,
    initrd: str,
    cmdline: str,
    mac: str | None = None,
    serial_log: str | None = None,
    memory_mib: int = 256,
) -> str:
    """Return libvirt domain XML for a direct-kernel-boot tiny guest.

    type='qemu' (software emulation: KVM is not usable on the test machines),
    q35, 1 vCPU, kernel command line ``console=tty0 console=ttyS0 panic=-1 <cmdline>``,
    QEMU user-mode networking on a virtio NIC (the guest reaches the host's
    127.0.0.1 as 10.0.2.2), no balloon. The serial console is written to
    ``serial_log`` (a file path on the libvirt host) or, if None, to a pty.
    """
    dom = ET.Element("domain", type="qemu")
    _sub(dom, "name", name)
    _sub(dom, "memory", str(int(memory_mib)), unit="MiB")
    _sub(dom, "vcpu", "1")
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="q35")
    _sub(os_el, "kernel", kernel)
    _sub(os_el, "initrd", initrd)
    full = BASE_CMDLINE + (" " + cmdline.strip() if cmdline and cmdline.strip() else "")
    _sub(os_el, "cmdline", full)
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    iface = _sub(devices, "interface", type="user")
    if mac:
        _sub(iface, "mac", address=mac)
    _sub(iface, "model", type="virtio")
    if serial_log:
        serial = _sub(devices, "serial", type="file")
        _sub(serial, "source", path=serial_log)
    else:
        serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    _sub(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


def smoke(uri: str, timeout: float = 60.0) -> float:
    """Boot the tiny guest on ``uri``; return seconds from create() to its GET."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    for path in (TINY_KERNEL, TINY_INITRD):
        if not os.path.exists(path):
            raise SystemExit(f"{path} missing: run tests/infra/tiny_guest.sh build")

    hit = threading.Event()
    hit_at: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/hello" and not hit.is_set():
                hit_at.append(time.monotonic())
                hit.set()
            body = b"hello\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    name = f"fm-smoke-{uuid.uuid4().hex[:8]}"
    log_dir = os.path.join(STATE, "smoke")
    os.makedirs(log_dir, exist_ok=True)
    serial_log = os.path.join(log_dir, f"{name}.log")
    xml = tiny_domain_xml(
        name,
        TINY_KERNEL,
        TINY_INITRD,
        f"fm.hostname={name} fm.phonehome=http://10.0.2.2:{port}/hello",
        serial_log=serial_log,
    )
    conn = libvirt.open(uri)
    dom = None
    ok = False
    try:
        dom = conn.defineXML(xml)
        t0 = time.monotonic()
        dom.create()
        if not hit.wait(timeout):
            try:
                with open(serial_log, errors="replace") as fh:
                    tail = fh.read()[-3000:]
            except OSError as exc:
                tail = f"(no serial log: {exc})"
            raise SystemExit(f"no phone-home from {name} on {uri} within {timeout:.0f}s\n{tail}")
        secs = hit_at[0] - t0
        print(f"{uri}: {name} phoned home {secs:.2f} s after create()")
        ok = True
        return secs
    finally:
        if dom is not None:
            try:
                if dom.isActive():
                    dom.destroy()
            finally:
                dom.undefine()
        conn.close()
        server.shutdown()
        server.server_close()
        if ok:  # keep the console log of a failed boot for debugging
            try:
                os.unlink(serial_log)
            except OSError:
                pass


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "smoke":
        smoke(argv[2])
        return 0
    if len(argv) >= 2 and argv[1] == "xml":
        # tiny_domain.py xml NAME [CMDLINE...] -> print XML (for debugging)
        print(tiny_domain_xml(argv[2], TINY_KERNEL, TINY_INITRD, " ".join(argv[3:])))
        return 0
    print("usage: tiny_domain.py smoke URI | xml NAME [CMDLINE...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
