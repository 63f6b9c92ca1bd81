"""The async twins (`aio`) hold to their sync originals, against real backends.

What this proves, with a redis-server of the tests' own (on a free loopback
port, stopped by pid) and the embedded store in a temporary directory, and
no mock of either:

- parity: every method of each sync Protocol exists on its async twin, the
  Protocols and every concrete class alike, with the same parameters,
  awaited; `rate_limited` counts a client on the app's runtime before the
  handler reads a byte;
- one store: what one twin writes the other reads, idempotency keys and
  fences included, so sync and async code can serve one service;
- one `AsyncLocks` shared by many tasks is safe (redis.asyncio's `Lock` is
  not: its token is per thread, and every task runs on one): a lease frees
  only itself, holds never overlap, fences rise in acquisition order;
- waiting for a busy lock leaves the event loop free;
- `aio.processes.run`: exact exit codes, a timeout or a cancellation that
  ends all the task started (a grandchild that left its session too), an
  answer within a bound even when the reaper is killed, and no zombie;
- the worker's sync `Breaker` serves the async twins: one timeout, then 503s
  at once.

No pytest-asyncio: each test drives its coroutines with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from {{ cookiecutter.package_name }} import backend, config
from {{ cookiecutter.package_name }} import processes as sync_processes
from {{ cookiecutter.package_name }}.aio import processes
from {{ cookiecutter.package_name }}.aio.breaker import GuardedAsyncLocks, GuardedAsyncState
from {{ cookiecutter.package_name }}.aio.locks import AsyncLocks, AsyncRedisLocks, OffloadedLocks
from {{ cookiecutter.package_name }}.aio.offload import STORE_THREADS, Offload
from {{ cookiecutter.package_name }}.aio.ratelimit import (
    AsyncClientRateLimit,
    AsyncRateLimiter,
    AsyncRedisRateLimiter,
    OffloadedRateLimiter,
)
from {{ cookiecutter.package_name }}.aio.state import AsyncRedisState, AsyncState, OffloadedState
from {{ cookiecutter.package_name }}.aiohttp_app import create_app
from {{ cookiecutter.package_name }}.aiohttp_app.context import rate_limited
from {{ cookiecutter.package_name }}.breaker import Breaker
from {{ cookiecutter.package_name }}.children import DIR_VARIABLE
from {{ cookiecutter.package_name }}.errors import (
    BackendUnavailable,
    IdempotencyKeyReused,
    LockLost,
    LockTimeout,
)
from {{ cookiecutter.package_name }}.locks import Locks, RedisLocks
from {{ cookiecutter.package_name }}.ratelimit import ClientRateLimit, RateLimiter
from {{ cookiecutter.package_name }}.state import RedisState, State


def settings(**changes) -> config.Settings:
    """The service's settings with `changes`, whatever the environment says."""
    return dataclasses.replace(config.load(), **changes)


def embedded_settings(directory: Path, **changes) -> config.Settings:
    return settings(
        redis_url="", data_dir=directory / "data", export_dir=directory / "exports", **changes
    )


def new_prefix() -> str:
    return f"twins-{uuid.uuid4().hex[:8]}"


# -- parity: the twins cannot drift ---------------------------------------------


def public_methods(cls: type) -> set[str]:
    return {
        name
        for name in dir(cls)
        if not name.startswith("_") and inspect.isfunction(getattr(cls, name))
    }


def parameters(fn: Callable) -> list[tuple]:
    """What callers rely on: each parameter's name, kind, default and annotation
    (the source's text: the package postpones evaluating annotations)."""
    return [
        (p.name, p.kind, p.default, p.annotation) for p in inspect.signature(fn).parameters.values()
    ]


def is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False))


TWIN_CLASSES = [
    (State, AsyncState),
    (State, AsyncRedisState),
    (State, OffloadedState),
    (State, GuardedAsyncState),
    (Locks, AsyncLocks),
    (Locks, AsyncRedisLocks),
    (Locks, OffloadedLocks),
    (Locks, GuardedAsyncLocks),
    (RateLimiter, AsyncRateLimiter),
    (RateLimiter, AsyncRedisRateLimiter),
    (RateLimiter, OffloadedRateLimiter),
    (ClientRateLimit, AsyncClientRateLimit),
]


@pytest.mark.parametrize(("sync_cls", "async_cls"), TWIN_CLASSES, ids=lambda cls: cls.__name__)
def test_every_sync_method_has_an_awaited_twin(sync_cls: type, async_cls: type) -> None:
    methods = public_methods(sync_cls)
    assert methods, f"{sync_cls.__name__} has no public method to compare"
    missing = methods - public_methods(async_cls)
    assert not missing, f"{async_cls.__name__} lacks {sorted(missing)}"
    if is_protocol(sync_cls) and is_protocol(async_cls):
        extra = public_methods(async_cls) - methods
        assert not extra, f"{async_cls.__name__} offers {sorted(extra)} its sync twin lacks"
    for name in sorted(methods):
        sync_fn, async_fn = getattr(sync_cls, name), getattr(async_cls, name)
        where = f"{async_cls.__name__}.{name}"
        assert parameters(async_fn) == parameters(sync_fn), where
        if name == "hold":
            assert_holds_asynchronously(async_cls, async_fn)
            continue
        assert inspect.iscoroutinefunction(async_fn), f"{where} is not a coroutine function"
        # An async def's return annotation is what awaiting it gives: the sync one's.
        sync_returns = inspect.signature(sync_fn).return_annotation
        assert inspect.signature(async_fn).return_annotation == sync_returns, where


def assert_holds_asynchronously(cls: type, hold: Callable) -> None:
    """`hold` is the one method not awaited: it gives an async context manager."""
    assert not inspect.iscoroutinefunction(hold), f"{cls.__name__}.hold must not be awaited"
    if is_protocol(cls):
        assert "AbstractAsyncContextManager" in str(inspect.signature(hold).return_annotation)
        return
    # Calling it only builds the context manager: nothing runs, `self` is not even
    # looked at, until `async with` enters it.
    manager = hold(None, "name", 1.0, 0.0)
    assert isinstance(manager, AbstractAsyncContextManager), f"{cls.__name__}.hold"


def test_processes_run_has_an_awaited_twin() -> None:
    assert parameters(processes.run) == parameters(sync_processes.run)
    assert inspect.iscoroutinefunction(processes.run)
    sync_returns = inspect.signature(sync_processes.run).return_annotation
    assert inspect.signature(processes.run).return_annotation == sync_returns


def test_a_rate_limited_handler_is_refused_before_it_reads_the_body(tmp_path: Path) -> None:
    """The decorator counts the client on the app's runtime budget, first."""
    one_request = embedded_settings(tmp_path, rate_limit_per_second=0.001, rate_limit_burst=1)
    bodies: list[bytes] = []

    @rate_limited
    async def limited(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.json_response({})

    async def main() -> None:
        app = await create_app(one_request)
        app.router.add_post("/limited", limited)
        async with TestClient(TestServer(app)) as client:
            for _ in range(3):
                assert (await client.get("/healthz")).status == 200
            assert (await client.post("/limited", data=b"first")).status == 200
            refused = await client.post("/limited", data=b"second")
            assert refused.status == 429, await refused.text()
            assert (await refused.json())["error"]["code"] == "rate_limited"
            assert int(refused.headers["Retry-After"]) >= 1

    asyncio.run(main())
    assert bodies == [b"first"]


# -- one store for both twins ---------------------------------------------------


@dataclasses.dataclass
class Store:
    """One backend, as a sync worker and an async worker would each open it."""

    state: State
    locks: Locks
    # Opens the async twins; called inside the event loop that will use them.
    open_async: Callable[[], AbstractAsyncContextManager[tuple[AsyncState, AsyncLocks]]]


@contextlib.asynccontextmanager
async def async_redis(port: int, prefix: str) -> AsyncIterator[tuple[AsyncState, AsyncLocks]]:
    client = backend.make_async_client(settings(redis_url=f"redis://127.0.0.1:{port}/0"))
    try:
        yield AsyncRedisState(client, prefix), AsyncRedisLocks(client, prefix)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def offloaded(
    embedded: config.Settings,
) -> AsyncIterator[tuple[AsyncState, AsyncLocks]]:
    """The embedded store as the async runtime opens it: on a pool of its own."""
    offload = Offload(STORE_THREADS, "test-store")
    try:
        state, locks = await offload(backend.open_embedded, embedded)
        yield OffloadedState(state, offload), OffloadedLocks(locks, offload)
    finally:
        offload.close()


@pytest.fixture(params=["redis", "embedded"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        client, prefix = server.client(), new_prefix()
        return Store(
            RedisState(client, prefix),
            RedisLocks(client, prefix),
            lambda: async_redis(server.port, prefix),
        )
    embedded = embedded_settings(tmp_path)
    state, locks = backend.open_embedded(embedded)
    return Store(state, locks, lambda: offloaded(embedded))


def test_the_twins_share_counters_and_values(store: Store) -> None:
    sync = store.state

    async def main() -> None:
        async with store.open_async() as (twin, _):
            assert sync.incr("hits") == 1
            assert await twin.incr("hits", 2) == 3
            assert sync.incr("hits") == 4
            assert sync.get_counter("hits") == await twin.get_counter("hits") == 4

            sync.set("greeting", "hello")
            assert await twin.get("greeting") == b"hello"
            assert not await twin.set_if_absent("greeting", "other")
            await twin.set("greeting", b"bye")
            assert sync.get("greeting") == b"bye"
            assert await twin.set_if_absent("fresh", "1", ttl=60)
            assert not sync.set_if_absent("fresh", "2")

    asyncio.run(main())


def test_the_twins_share_idempotency_keys(store: Store) -> None:
    sync = store.state
    first, second = f"key-{uuid.uuid4()}", f"key-{uuid.uuid4()}"

    async def main() -> None:
        async with store.open_async() as (twin, _):
            # Sync first, then an async retry: it gets the first answer, counts nothing.
            assert sync.incr_once("orders", 5, first, 60) == 5
            assert await twin.incr_once("orders", 5, first, 60) == 5
            with pytest.raises(IdempotencyKeyReused):
                await twin.incr_once("orders", 6, first, 60)
            with pytest.raises(IdempotencyKeyReused):
                sync.incr_once("orders", 6, first, 60)
            # Async first, then a sync retry.
            assert await twin.incr_once("orders", 2, second, 60) == 7
            assert sync.incr_once("orders", 2, second, 60) == 7
            with pytest.raises(IdempotencyKeyReused):
                sync.incr_once("refunds", 2, second, 60)
            with pytest.raises(IdempotencyKeyReused):
                await twin.incr_once("refunds", 2, second, 60)
            assert sync.get_counter("orders") == await twin.get_counter("orders") == 7
            assert await twin.get_counter("refunds") == 0

    asyncio.run(main())


def test_the_twins_share_locks_and_one_fence(store: Store) -> None:
    sync = store.locks

    async def main() -> list[int]:
        async with store.open_async() as (_, twin):
            held = sync.acquire("job", ttl=10, wait=0)
            fences = [held.fence]
            assert await twin.try_acquire("job", ttl=10) is None
            with pytest.raises(LockTimeout):
                await twin.acquire("job", ttl=10, wait=0.2)
            sync.write_fenced(held, "v", "sync")
            assert await twin.read_fenced("job", "v") == b"sync"
            assert sync.release(held)

            lease = await twin.acquire("job", ttl=10, wait=1)
            fences.append(lease.fence)
            assert sync.try_acquire("job", ttl=10) is None
            with pytest.raises(LockLost):
                sync.write_fenced(held, "v", "stale")
            await twin.write_fenced(lease, "v", "async")
            assert sync.read_fenced("job", "v") == b"async"
            assert await twin.release(lease)

            for _ in range(3):
                lease = sync.acquire("job", ttl=10, wait=1)
                fences.append(lease.fence)
                sync.release(lease)
                lease = await twin.acquire("job", ttl=10, wait=1)
                fences.append(lease.fence)
                await twin.release(lease)
            return fences

    fences = asyncio.run(main())
    assert fences == sorted(set(fences)), f"fences repeat or go back: {fences}"


# -- one AsyncLocks shared between tasks ----------------------------------------


def watchdog_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("lock-watchdog")]


def test_a_stale_lease_frees_nothing_on_a_shared_locks_object(store: Store) -> None:
    async def main() -> None:
        async with store.open_async() as (_, locks):
            b_released, a_holds, b_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

            async def task_a() -> None:
                await b_released.wait()
                lease = await locks.acquire("shared", ttl=10, wait=5)
                a_holds.set()
                await b_done.wait()
                assert await locks.try_acquire("shared", ttl=10) is None, "B freed A's lock"
                await locks.write_fenced(lease, "v", "a")
                assert await locks.release(lease)

            async def task_b() -> None:
                stale = await locks.acquire("shared", ttl=10, wait=5)
                assert await locks.release(stale)
                b_released.set()
                await a_holds.wait()
                # Where redis.asyncio's Lock would free A's lock: same object, same thread.
                assert not await locks.release(stale)
                assert not await locks.extend(stale, 10)
                with pytest.raises(LockLost):
                    await locks.write_fenced(stale, "v", "b")
                b_done.set()

            await asyncio.wait_for(asyncio.gather(task_a(), task_b()), 20)
            assert await locks.read_fenced("shared", "v") == b"a"

    asyncio.run(main())


def test_a_hold_longer_than_its_ttl_keeps_its_lease(store: Store) -> None:
    # The watchdog's timer re-arms the lease every ttl/3, so a hold of several TTLs
    # still writes under its fence, and nobody else gets the lock meanwhile.
    ttl = 0.6

    async def main() -> None:
        async with store.open_async() as (_, locks):
            async with locks.hold("long", ttl=ttl, wait=1) as lease:
                for _ in range(4):
                    await asyncio.sleep(ttl / 2)
                    assert await locks.try_acquire("long", ttl=ttl) is None, "lease expired"
                await locks.write_fenced(lease, "v", "kept")
            assert await locks.read_fenced("long", "v") == b"kept"
            assert watchdog_tasks() == [], "a watchdog outlived its hold"
            free = await locks.try_acquire("long", ttl=ttl)
            assert free is not None, "the lock was left held"
            await locks.release(free)

    asyncio.run(main())


def test_holds_on_one_locks_object_never_overlap(store: Store) -> None:
    tasks = 20
    events: list[tuple[str, int]] = []

    async def main() -> None:
        async with store.open_async() as (_, locks):

            async def work() -> None:
                async with locks.hold("critical", ttl=5, wait=20) as lease:
                    events.append(("enter", lease.fence))
                    await asyncio.sleep(0.005)  # every other task gets a chance to barge in
                    events.append(("exit", lease.fence))

            await asyncio.wait_for(asyncio.gather(*(work() for _ in range(tasks))), 30)
            assert watchdog_tasks() == [], "a watchdog outlived its hold"
            free = await locks.try_acquire("critical", ttl=5)
            assert free is not None, "the lock was left held"
            await locks.release(free)

    asyncio.run(main())
    # One task runs at a time on the loop, so the list's order is the order of events.
    assert [kind for kind, _ in events] == ["enter", "exit"] * tasks, events
    assert all(events[i][1] == events[i + 1][1] for i in range(0, len(events), 2)), events
    fences = [fence for kind, fence in events if kind == "enter"]
    assert fences == sorted(set(fences)), f"fences not rising in acquisition order: {fences}"


# -- waiting for a lock leaves the loop free ------------------------------------

HOLD_SECONDS = 1.0
TICK_SECONDS = 0.01
# A wait that blocked the loop would show one gap of about HOLD_SECONDS. The ticks
# are 10 ms apart; 0.25 s leaves room for the scheduling delays of a loaded,
# shared machine (two CPUs, other jobs running) while staying far below the hold.
MAX_TICK_GAP = 0.25


def test_a_cancelled_acquire_leaves_the_lock_free(store: Store) -> None:
    # A request cancelled while its try runs on the store pool: the thread goes on
    # and takes the flock, which only its holder can free. It must be given back,
    # not kept until the worker dies. (Redis frees it after the TTL in any case.)
    async def main() -> None:
        async with store.open_async() as (_, locks):
            attempt = asyncio.create_task(locks.acquire("cancelled", ttl=1, wait=5))
            await asyncio.sleep(0)  # the try is under way on the pool
            time.sleep(0.05)  # and done, while the loop cannot notice yet
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attempt
            # Another worker gets the lock (within the TTL, for Redis) while this
            # one lives on: a leaked flock would be freed only by this process's end.
            lease = await asyncio.to_thread(store.locks.acquire, "cancelled", 1, 3)
            store.locks.release(lease)

    asyncio.run(main())


def test_waiting_for_a_lock_leaves_the_loop_free(store: Store) -> None:
    gaps: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def main() -> tuple[int, int, float]:
        async with store.open_async() as (_, locks):
            held = asyncio.Event()

            async def holder() -> int:
                async with locks.hold("busy", ttl=5, wait=0) as lease:
                    held.set()
                    await asyncio.sleep(HOLD_SECONDS)
                return lease.fence

            async def waiter() -> tuple[int, float]:
                await held.wait()
                started = time.monotonic()
                lease = await locks.acquire("busy", ttl=5, wait=2 * HOLD_SECONDS)
                waited = time.monotonic() - started
                await locks.release(lease)
                return lease.fence, waited

            stop = asyncio.Event()
            ticking = asyncio.create_task(ticker(stop))
            first, (second, waited) = await asyncio.gather(holder(), waiter())
            stop.set()
            await ticking
            return first, second, waited

    first, second, waited = asyncio.run(main())
    assert waited >= 0.8 * HOLD_SECONDS, f"the waiter did not wait for the holder: {waited:.2f} s"
    assert second > first
    assert len(gaps) >= 10, f"the ticker hardly ran: {len(gaps)} ticks"
    assert max(gaps) < MAX_TICK_GAP, f"the loop stalled for {max(gaps):.3f} s"


# -- child processes ------------------------------------------------------------

PYTHON = [sys.executable, "-I", "-c"]


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain ") ".
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
    return state, int(ppid)


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in "ZX"


def our_zombies() -> list[int]:
    """Children of the test process that ended and nobody reaped.

    Read from /proc, not with waitpid(-1, WNOHANG), which would reap (and so
    hide) the very zombie it found.
    """
    pids = (int(entry) for entry in os.listdir("/proc") if entry.isdigit())
    return [pid for pid in pids if proc_stat(pid) == ("Z", os.getpid())]


def running(marker: str) -> list[int]:
    """Live processes whose command line holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if entry.isdigit() and marker.encode() in cmdline and alive(int(entry)):
            found.append(int(entry))
    return found


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    """A process killed by another's SIGKILL, or reaped by init, is gone a moment later."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        time.sleep(0.02)


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The children registry gunicorn's master keeps; without it `children.note` does nothing."""
    directory = tmp_path / "children"
    directory.mkdir()
    monkeypatch.setenv(DIR_VARIABLE, str(directory))
    return directory


def test_exit_codes_come_back_exactly_from_many_children_at_once(registry: Path) -> None:
    codes = [0, 1, 3, 255] * 10

    async def main() -> list[processes.Completed]:
        return await asyncio.gather(
            *(processes.run([*PYTHON, f"import sys; sys.exit({code})"], 30) for code in codes)
        )

    results = asyncio.run(main())
    assert [(r.returncode, r.timed_out, r.stdout) for r in results] == [
        (code, False, "") for code in codes
    ]
    assert our_zombies() == []
    assert list(registry.iterdir()) == [], "a finished child is still on record"


def test_a_timeout_kills_the_child_and_its_grandchild(registry: Path) -> None:
    timeout = 1.0
    # The shell prints its own pid and its background sleep's, then waits for it.
    argv = ["sh", "-c", "sleep 30 & echo $$ $!; wait"]
    started = time.monotonic()
    result = asyncio.run(processes.run(argv, timeout))
    took = time.monotonic() - started

    assert result.timed_out
    assert result.returncode == -signal.SIGKILL
    assert 0.9 * timeout <= took < timeout + 2.0, f"took {took:.2f} s"
    child, grandchild = (int(pid) for pid in result.stdout.split())
    assert not alive(child), "the child outlived its timeout"
    wait_until(lambda: not alive(grandchild), "the grandchild killed with its group")
    assert our_zombies() == []
    assert list(registry.iterdir()) == []


def test_a_cancelled_run_leaves_nothing_behind(registry: Path) -> None:
    """A request cancelled mid-run (the client went away) kills its child's group too."""
    marker = "29.8765"
    argv = ["sh", "-c", f"sleep {marker} & sleep {marker}"]

    async def main() -> float:
        task = asyncio.create_task(processes.run(argv, 60))
        deadline = time.monotonic() + 10
        # Both sleeps started (the shell may exec the second) and the child on record.
        while len(running(marker)) < 2 or not list(registry.iterdir()):
            assert time.monotonic() < deadline, "the child never started"
            await asyncio.sleep(0.02)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    took = asyncio.run(main())
    assert took < 2.0, f"cancelling took {took:.2f} s"
    wait_until(lambda: not running(marker), "every process of the cancelled child's group gone")
    assert our_zombies() == []
    assert list(registry.iterdir()) == [], "a cancelled child is still on record"


# A task whose grandchild leaves the session (see the file).
ESCAPING_TASK = Path(__file__).parents[1] / "integration" / "escaping_task.py"


@contextlib.contextmanager
def escaping(child: str, grandchild: str) -> Iterator[list[str]]:
    """The task's argv; whatever mentions its marker afterwards is killed."""
    marker = f"9.{time.monotonic_ns() % 10**6:06d}"
    try:
        yield [sys.executable, "-I", str(ESCAPING_TASK), child, grandchild, marker]
    finally:
        for pid in running(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("child", "grandchild", "timeout"),
    [
        ("wait", "hold", 1.0),
        ("stop-reaper", "hold", 1.0),
        ("exit", "hold", 30),
        ("exit", "detach", 30),
    ],
)
def test_what_a_task_started_ends_with_its_answer(
    registry: Path, child: str, grandchild: str, timeout: float
) -> None:
    """A grandchild that left the task's session: the timeout is kept, and it ends."""
    with escaping(child, grandchild) as argv:
        started = time.monotonic()
        result = asyncio.run(processes.run(argv, timeout))
        took = time.monotonic() - started
        if child == "exit":
            assert (result.returncode, result.timed_out) == (3, False), result
            assert took < 3, f"answered after {took:.2f} s"
        else:
            assert (result.returncode, result.timed_out) == (-signal.SIGKILL, True), result
            assert took < timeout + 2, f"answered after {took:.2f} s"
        pids = dict(line.split() for line in result.stdout.splitlines())
        assert set(pids) == {"child", "grandchild"}, result
        assert not [name for name, pid in pids.items() if alive(int(pid))], pids
        assert running(argv[-1]) == []
    assert our_zombies() == []
    assert list(registry.iterdir()) == [], "an ended task is still on record"


def test_a_killed_reaper_still_answers_within_the_bound(registry: Path) -> None:
    """The worst case: the reaper, killed, ends nothing; the loop is still free, and
    what stayed in the task's session (all but what left it) is killed."""
    with escaping("kill-reaper", "hold") as argv:
        started = time.monotonic()
        result = asyncio.run(processes.run(argv, 1.0))
        took = time.monotonic() - started
    assert result.timed_out, result
    assert took < 1 + sync_processes.END_SECONDS + 2, f"answered after {took:.2f} s"
    child = dict(line.split() for line in result.stdout.splitlines())["child"]
    assert not alive(int(child)), "what stayed in the task's session runs on"
    assert our_zombies() == []
    assert list(registry.iterdir()) == []


def test_signalling_the_reaper_leaves_its_reaping_to_the_watcher() -> None:
    """`end` may signal a reaper that has just exited. Reaping it then (as the
    transport's `send_signal` does, through `Popen.poll`) leaves the loop's child
    watcher no child to wait for, and asyncio reports 255 for the task."""
    exited = os.posix_spawnp("sh", ["sh", "-c", "exit 3"], os.environ)
    wait_until(lambda: proc_stat(exited) == ("Z", os.getpid()), "the child exited")
    processes.signal_unreaped(exited, signal.SIGTERM)
    assert proc_stat(exited) == ("Z", os.getpid()), "signalling it reaped it"
    assert os.waitstatus_to_exitcode(os.waitpid(exited, 0)[1]) == 3

    running = os.posix_spawnp("sleep", ["sleep", "30"], os.environ)
    processes.signal_unreaped(running, signal.SIGTERM)
    assert os.waitstatus_to_exitcode(os.waitpid(running, 0)[1]) == -signal.SIGTERM


# -- the breaker ----------------------------------------------------------------


async def timed(call: Awaitable) -> tuple[str, float]:
    started = time.monotonic()
    try:
        await call
        outcome = "ok"
    except BackendUnavailable:
        outcome = "503"
    return outcome, time.monotonic() - started


def test_the_workers_breaker_serves_the_async_twins(redis_server) -> None:
    timeout, retry_after = 0.5, 1.0
    breaker = Breaker(retry_after)
    paused = settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/0", redis_timeout=timeout)

    async def main() -> tuple[tuple[str, float], list[tuple[str, float]]]:
        client = backend.make_async_client(paused)
        try:
            prefix = new_prefix()
            state = GuardedAsyncState(AsyncRedisState(client, prefix), breaker)
            locks = GuardedAsyncLocks(AsyncRedisLocks(client, prefix), breaker)
            assert await state.incr("n") == 1
            redis_server.signal(signal.SIGSTOP)
            try:
                first = await timed(state.incr("n"))
                later = [await timed(state.incr("n")) for _ in range(5)]
                later += [await timed(locks.acquire("l", ttl=5, wait=1)) for _ in range(3)]
                later.append(await timed(state.ping()))
            finally:
                redis_server.signal(signal.SIGCONT)
            # Redis is back: after retry_after, the next call tries, succeeds, closes it.
            await asyncio.sleep(retry_after)
            deadline = time.monotonic() + 10
            while (await timed(state.ping()))[0] != "ok":
                assert time.monotonic() < deadline, "the breaker never closed again"
                await asyncio.sleep(0.1)
            assert breaker.closed
            return first, later
        finally:
            await client.aclose()

    first, later = asyncio.run(main())
    assert first[0] == "503" and first[1] >= 0.9 * timeout, first
    assert all(outcome == "503" for outcome, _ in later), later
    assert max(took for _, took in later) < 0.2, f"not refused at once: {later}"


def test_no_pooled_connection_fails_once_a_restarted_redis_answers(redis_servers) -> None:
    """Redis killed and restarted: the connections the worker's pool kept from before
    are replaced, not handed out dead (each would be a 503 that opens the breaker
    while Redis answers; under RESP3, its default, redis-py before 8.2 skipped that check)."""
    server = redis_servers("redis")
    calls = 5

    async def main() -> list[BaseException]:
        client = backend.make_async_client(settings(redis_url=f"redis://127.0.0.1:{server.port}/0"))
        try:
            state = AsyncRedisState(client, new_prefix())
            # As many pooled connections as calls at once, all idle at the kill.
            await asyncio.gather(*(state.incr("n") for _ in range(calls)))
            # Off the loop, which goes on meanwhile as a worker's does.
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start)  # the same port, empty
            outcomes = await asyncio.gather(
                *(state.incr("n") for _ in range(calls)), return_exceptions=True
            )
            return [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        finally:
            await client.aclose()

    assert asyncio.run(main()) == []
