"""The trimming of freed memory: called on its interval while started, never after it stopped."""

from __future__ import annotations

import asyncio
import ctypes
import platform

import pytest

from fogmachine.memtrim import MallocTrim, find_trim


async def test_trims_on_its_interval_until_stopped() -> None:
    calls: list[int] = []
    trim = MallocTrim(interval_s=0.01, trim=lambda pad: calls.append(pad) or 1)
    await trim.start()
    while len(calls) < 3:
        await asyncio.sleep(0.01)
    await trim.stop()
    seen = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == seen == trim.trims and set(calls) == {0}


async def test_without_malloc_trim_it_does_nothing() -> None:
    trim = MallocTrim(interval_s=0.01)
    trim.trim = None  # a C library without malloc_trim (musl, macOS)
    await trim.start()
    await asyncio.sleep(0.03)
    await trim.stop()
    assert trim.trims == 0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trim_is_found_and_callable() -> None:
    trim = find_trim()
    assert trim is not None
    block = ctypes.create_string_buffer(1 << 20)  # something to free
    del block
    assert trim(0) in (0, 1)
