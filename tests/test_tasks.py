"""The periodic task registry: jittered callbacks, exclusive tasks in one process at a time."""

import asyncio
import threading

from fogmachine.composition import build_context
from fogmachine.db import migrate
from fogmachine.db.session import Database
from fogmachine.services import leases
from fogmachine.tasks import PeriodicTask, TaskRegistry


async def test_exclusive_task_runs_in_one_registry_at_a_time(database_url, make_config):
    config = make_config(database_connection=database_url)
    dbs = [Database(database_url, threads=2) for _ in range(2)]
    migrate.ensure_schema(dbs[0].engine)
    ran: list[str] = []
    registries = []
    for i, db in enumerate(dbs):
        ctx = build_context(config, db)
        reg = TaskRegistry(ctx, process_id=f"proc{i}")

        async def job(i=i) -> None:
            ran.append(f"proc{i}")

        reg.add(PeriodicTask("expire", 0.05, job))
        reg.add(PeriodicTask("local", 0.05, job, exclusive=False))
        registries.append(reg)
    try:
        for reg in registries:
            await reg.start()
        # until each has had several turns (a deadline only stops a broken build from hanging)
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline and not (
                max(reg.tasks["expire"].runs for reg in registries) > 3
                and all(reg.tasks["local"].runs > 3 for reg in registries)):
            await asyncio.sleep(0.05)
        # counted before stopping: a stop releases the lease and the other may then take it
        exclusive_runs = [reg.tasks["expire"].runs for reg in registries]
        for reg in registries:
            await reg.stop()
        assert sorted(exclusive_runs)[0] == 0 and sorted(exclusive_runs)[1] > 3, exclusive_runs
        assert all(reg.tasks["local"].runs > 3 for reg in registries)
        # after the holder stopped (released), the other one takes the task
        holder = exclusive_runs.index(max(exclusive_runs))
        other = registries[1 - holder]
        assert await other.run_once("expire")
    finally:
        for db in dbs:
            db.dispose()


async def test_failing_task_is_logged_and_counted(make_config, caplog):
    config = make_config()
    db = Database(config.database_url, threads=2)
    migrate.ensure_schema(db.engine)
    reg = TaskRegistry(build_context(config, db), process_id="p")

    async def boom() -> None:
        raise RuntimeError("kaput")

    reg.add(PeriodicTask("boom", 10, boom))
    assert await reg.run_once("boom")
    assert reg.tasks["boom"].failures == 1
    assert "periodic task boom failed" in caplog.text
    db.dispose()


async def test_the_heartbeat_does_not_wait_behind_a_busy_pool(database_url, make_config):
    """Found under load (issue 11): a burst of checkouts filled the database pool's queue, the heartbeat
    waited in it until its lease lapsed, and the process was taken for dead. It has a thread of its own."""
    config = make_config(database_connection=database_url)
    db = Database(database_url, threads=2)
    migrate.ensure_schema(db.engine)
    reg = TaskRegistry(build_context(config, db), process_id="busy")
    heartbeat = f"{leases.PROCESS_PREFIX}busy"
    release = threading.Event()

    def hold(_session) -> None:  # a unit of work that keeps its pool thread until released
        release.wait(60)

    held = [asyncio.ensure_future(db.run(hold)) for _ in range(4)]  # both threads taken, two more queued
    try:
        await asyncio.wait_for(reg.run_once(heartbeat), 20)  # the deadline only stops a broken build hanging
        assert "busy" in await asyncio.wait_for(asyncio.to_thread(db.run_sync, leases.live_processes), 20)
        assert not any(task.done() for task in held)  # it really went past a full pool
    finally:
        release.set()
        await asyncio.gather(*held)
        db.dispose()


async def test_a_stop_keeps_the_lease_until_the_task_under_way_ends(database_url, make_config):
    """Found under load (issue 11): a stop released the leases while a tick was still under way; the tick
    then took the lease again (or another process took the task while this one still ran it)."""
    config = make_config(database_connection=database_url)
    dbs = [Database(database_url, threads=2) for _ in range(2)]
    migrate.ensure_schema(dbs[0].engine)
    first = TaskRegistry(build_context(config, dbs[0]), process_id="first")
    second = TaskRegistry(build_context(config, dbs[1]), process_id="second")
    running, finish = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        running.set()
        await finish.wait()

    async def quick() -> None:
        pass

    first.add(PeriodicTask("job", 0.05, slow))
    second.add(PeriodicTask("job", 3600, quick))
    try:
        await first.start()
        await asyncio.wait_for(running.wait(), 30)  # first holds the lease and runs the job
        stopping = asyncio.ensure_future(first.stop())
        await asyncio.wait({stopping}, timeout=1)  # without the wait, the stop is over by now
        assert not await second.run_once("job")  # the job still runs in first: its lease holds
        finish.set()
        await asyncio.wait_for(stopping, 30)
        assert await second.run_once("job")  # released once the job ended
    finally:
        finish.set()
        for db in dbs:
            db.dispose()


async def test_a_start_up_task_whose_lease_a_crashed_process_holds_runs_once_its_heartbeat_expires(
        database_url, make_config):
    """Found by tests/system/test_env_faults.py: a server SIGKILLed and started again at once found the dead
    process's lease on a task it runs at start still counting (its heartbeat lasts HEARTBEAT_TTL after the
    crash), so the start-up run was skipped and the task waited a whole interval (an hour) for its first."""
    config = make_config(database_connection=database_url)
    db = Database(database_url, threads=2)
    migrate.ensure_schema(db.engine)

    def crashed(session) -> None:  # what a process leaves behind when killed: a heartbeat a moment from its end
        assert leases.try_acquire(session, f"{leases.PROCESS_PREFIX}dead", "dead", 3.0)
        assert leases.try_acquire(session, "task:sweep", "dead", 3 * 3600)

    db.run_sync(crashed)
    ran: list[str] = []

    async def sweep() -> None:
        ran.append("sweep")

    restarted = TaskRegistry(build_context(config, db), process_id="restarted")
    restarted.add(PeriodicTask("sweep", 3600, sweep))
    restarted.at_start.append("sweep")
    try:
        await restarted.start()  # its first try finds the dead process still counting as alive
        await asyncio.wait_for(restarted.wait_started(), 60)
        assert ran == ["sweep"]  # run once the dead heartbeat had expired, not an hour later
    finally:
        await restarted.stop()
        db.dispose()
