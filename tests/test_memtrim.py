"""The trimming of freed memory: a periodic task of every process, called on its interval, never after a stop."""

from __future__ import annotations

import asyncio
import ctypes
import platform

import pytest

from fogmachine import memtrim
from fogmachine.composition import build_context, release_context
from fogmachine.db import migrate
from fogmachine.db.session import Database
from fogmachine.memtrim import find_trim, trim_task
from fogmachine.tasks import TaskRegistry


async def test_trims_on_its_interval_until_the_registry_stops(make_config) -> None:
    config = make_config()
    db = Database(config.database_url, threads=2)
    migrate.ensure_schema(db.engine)
    ctx = build_context(config, db)
    calls: list[int] = []
    task = trim_task(interval_s=0.01, trim=lambda pad: calls.append(pad) or 1)
    assert task is not None and not task.exclusive  # every process trims its own memory
    registry = TaskRegistry(ctx, process_id="trimmer")
    registry.add(task)
    try:
        await registry.start()
        deadline = asyncio.get_running_loop().time() + 30  # only stops a broken build from hanging
        while len(calls) < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await registry.stop()
        seen = len(calls)
        await asyncio.sleep(0.05)
        assert len(calls) == seen == task.runs >= 3 and set(calls) == {0}
    finally:
        release_context(ctx)
        db.dispose()


def test_without_malloc_trim_there_is_no_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memtrim, "find_trim", lambda: None)  # a C library without it (musl, macOS)
    assert trim_task() is None


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trim_is_found_and_callable() -> None:
    trim = find_trim()
    assert trim is not None
    block = ctypes.create_string_buffer(1 << 20)  # something to free
    del block
    assert trim(0) in (0, 1)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_arenas_are_limited_in_a_process_of_its_own() -> None:
    """In a child process (the limit is for the whole process): glibc accepts it, and threads that allocate at
    once then share the limited heaps (glibc's malloc_info lists one <heap> per arena)."""
    import subprocess
    import sys

    probe = """
import ctypes, ctypes.util, os, sys, threading, tempfile
from fogmachine import memtrim
if sys.argv[1] == "limit":
    assert memtrim.limit_arenas(2)
go = threading.Barrier(16)
def work():
    go.wait()
    for _ in range(200):
        bufs = [ctypes.create_string_buffer(200_000) for _ in range(4)]
threads = [threading.Thread(target=work) for _ in range(16)]
[t.start() for t in threads]; [t.join() for t in threads]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fdopen.restype = ctypes.c_void_p
libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.TemporaryFile("w+") as out:
    stream = libc.fdopen(os.dup(out.fileno()), b"w")
    libc.malloc_info(0, stream); libc.fclose(stream)
    out.seek(0)
    print(out.read().count("<heap nr="))
"""
    heaps = {}
    for mode in ("limit", "default"):
        done = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True)
        heaps[mode] = int(done.stdout.strip())
    assert heaps["limit"] <= 2 < heaps["default"], heaps
