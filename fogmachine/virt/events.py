"""libvirt's event loop: the default implementation, on one daemon thread per process.

Why not ``libvirtaio`` (libvirt events on the asyncio loop): it binds libvirt
to ONE asyncio loop for the life of the process, and a process that runs more
than one loop (the test suite, a CLI command after a server) then breaks every
remote connection with "Event loop is closed". The default implementation on
its own thread has no such tie: callbacks (domain events, close callbacks,
keepalive) run on that thread and hand their work to whichever loop the
``HostConnection`` lives on with ``loop.call_soon_threadsafe``.

``virEventRegisterDefaultImpl`` must run before the first connection opens
(keepalive and events are set up at open) and can run only once per process,
so ``ensure_running`` is idempotent and every connection calls it first. The
thread is a daemon and lives as long as the process: libvirt offers no way to
unregister its event implementation.
"""

from __future__ import annotations

import logging
import threading

import libvirt

from fogmachine.virt.errors import silence_libvirt

log = logging.getLogger(__name__)

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _run() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # a callback raised; the loop must survive it
            log.exception("libvirt event loop iteration failed")


def ensure_running() -> threading.Thread:
    """Register libvirt's default event implementation and start its thread, once per process."""
    global _thread
    with _lock:
        if _thread is None:
            silence_libvirt()
            libvirt.virEventRegisterDefaultImpl()
            _thread = threading.Thread(target=_run, name="fm-libvirt-events", daemon=True)
            _thread.start()
        return _thread
