"""The call threads: results and errors come back, no call waits for another, idle threads leave."""

import logging
import threading
import time

import pytest

from fogmachine.virt.callthreads import CallThreads


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def threads():
    made = CallThreads(name="test-calls")
    yield made
    made.shutdown(wait=True)


def test_results_and_errors_come_back_and_an_idle_thread_is_reused(threads):
    assert threads.submit(lambda a, b: a + b, 2, b=3).result(5) == 5
    future = threads.submit(int, "not a number")
    with pytest.raises(ValueError):
        future.result(5)
    for i in range(50):  # one call after another: the same thread takes each
        assert threads.submit(pow, i, 2).result(5) == i ** 2
    assert (threads.threads, threads.busy) == (1, 0)


def test_calls_that_hang_hold_only_their_own_threads(threads):
    release = threading.Event()
    hung = [threads.submit(release.wait, 10) for _ in range(5)]
    wait_until(lambda: all(f.running() for f in hung))
    # a call made now runs at once, beside the hung ones
    assert threads.submit(lambda: "through").result(2) == "through"
    assert not any(f.done() for f in hung) and threads.busy == 5
    release.set()
    assert all(f.result(5) for f in hung)
    wait_until(lambda: threads.busy == 0)
    assert threads.threads == 6  # idle now, kept for the next calls


def test_idle_threads_leave():
    made = CallThreads(idle_timeout=0.05, name="leaving")
    try:
        release = threading.Event()
        calls = [made.submit(release.wait, 10) for _ in range(3)]
        wait_until(lambda: made.threads == 3)
        release.set()
        assert all(f.result(5) for f in calls)
        wait_until(lambda: made.threads == 0)
        assert made.submit(lambda: "again").result(5) == "again"  # a new thread when one is needed
    finally:
        made.shutdown(wait=True)


def test_past_the_cap_calls_wait_for_a_thread_and_a_cancelled_one_is_skipped(caplog):
    made = CallThreads(max_threads=2, name="capped")
    release = threading.Event()
    ran = []
    try:
        with caplog.at_level(logging.WARNING, logger="fogmachine.virt.callthreads"):
            busy = [made.submit(release.wait, 10) for _ in range(2)]
            waiting = made.submit(ran.append, "waited")
            skipped = made.submit(ran.append, "should not run")
        wait_until(lambda: all(f.running() for f in busy))
        assert made.threads == 2 and not waiting.running()
        assert any("capped: 2 threads busy, calls wait for one" in r.getMessage() for r in caplog.records)
        assert skipped.cancel()  # still waiting
        release.set()
        assert waiting.result(5) is None and all(f.result(5) for f in busy)
        assert ran == ["waited"]
    finally:
        release.set()
        made.shutdown(wait=True)


def test_shutdown_joins_and_refuses_new_calls():
    made = CallThreads(name="closing")
    futures = [made.submit(time.sleep, 0.01) for _ in range(4)]
    made.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert made.threads == 0
    with pytest.raises(RuntimeError, match="shut down"):
        made.submit(print)


def test_shutdown_can_cancel_the_calls_still_waiting():
    made = CallThreads(max_threads=1, name="cancelling")
    release = threading.Event()
    running = made.submit(release.wait, 10)
    wait_until(running.running)
    waiting = [made.submit(time.sleep, 0) for _ in range(3)]
    made.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert running.result(5) is True
    assert all(f.cancelled() for f in waiting)
    wait_until(lambda: made.threads == 0)
