"""The shared call pool: results and errors come back, a hung call gets a stand-in, the pool shrinks back."""

import threading
import time

import pytest

from fogmachine.virt import callpool
from fogmachine.virt.callpool import CallPool


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def pool():
    pool = CallPool(1, stall_after=0.1, name="test-pool")
    yield pool
    pool.shutdown(wait=True)


def test_results_and_errors_come_back(pool):
    assert pool.submit(lambda a, b: a + b, 2, b=3).result(5) == 5
    future = pool.submit(int, "not a number")
    with pytest.raises(ValueError):
        future.result(5)
    assert [pool.submit(pow, i, 2) for i in range(200)][-1].result(5) == 199 ** 2
    assert (pool.threads, pool.stalled) == (1, 0)  # quick calls never look stalled


def test_a_hung_call_gets_a_stand_in_and_the_pool_shrinks_back(pool):
    release = threading.Event()
    hung = pool.submit(release.wait, 10)
    wait_until(lambda: pool.stalled == 1)
    # the single counted thread is the stand-in: later calls do not wait for the hung one
    assert pool.submit(lambda: "through").result(2) == "through"
    assert not hung.done()
    release.set()
    assert hung.result(5) is True
    wait_until(lambda: pool.threads == 1)
    assert pool.stalled == 0


def test_many_hung_calls_stop_at_the_thread_cap(monkeypatch, caplog):
    monkeypatch.setattr(callpool, "MAX_THREADS", 3)
    pool = CallPool(1, stall_after=0.05, name="capped")
    release = threading.Event()
    try:
        hung = [pool.submit(release.wait, 10) for _ in range(5)]
        wait_until(lambda: pool.threads == 3 and sum(f.running() for f in hung) == 3)
        # the watchdog has looked again and declined to start a fourth thread (it says so)
        wait_until(lambda: any("no more are started" in r.getMessage() for r in caplog.records))
        assert any("capped: 3 threads" in r.getMessage() for r in caplog.records)
        assert pool.threads == 3  # the other two calls wait in the queue
        release.set()
        assert all(f.result(5) for f in hung)
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_a_call_cancelled_before_it_began_is_skipped():
    pool = CallPool(1, stall_after=10, name="skipping")
    release = threading.Event()
    ran = []
    try:
        blocker = pool.submit(release.wait, 10)
        wait_until(blocker.running)
        later = pool.submit(ran.append, "should not run")
        assert later.cancel()  # still queued behind the blocker
        release.set()
        pool.submit(lambda: None).result(5)
        assert ran == [] and blocker.result(1) is True
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_shutdown_joins_and_refuses_new_calls():
    pool = CallPool(2, name="closing")
    futures = [pool.submit(time.sleep, 0.01) for _ in range(4)]
    pool.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert pool.threads == 0
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(print)


def test_shutdown_can_cancel_what_is_still_queued():
    pool = CallPool(1, stall_after=10, name="cancelling")
    release = threading.Event()
    running = pool.submit(release.wait, 10)
    wait_until(running.running)
    queued = [pool.submit(time.sleep, 0) for _ in range(3)]
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert running.result(5) is True
    assert all(f.cancelled() for f in queued)
    wait_until(lambda: pool.threads == 0)
