"""A worker's Redis connections all in use is back-pressure: `errors.Busy`, never an outage.

Against a real redis-server (the tests' own, on a free loopback port,
stopped by pid), with the clients `backend` makes: a call that finds every
connection of its pool in use waits REDIS_TIMEOUT_SECONDS for one, then
raises Busy, which neither opens nor closes the breaker and does not make
the rate limit fail open; a Redis that does not answer is still
BackendUnavailable. Lease renewals have connections of their own, so a full
pool never costs a holder its lease; a renewal that meets a full pool
anyway tries again at the next tick.
"""

from __future__ import annotations

{% if cookiecutter.framework == "aiohttp" %}
import asyncio
{% endif %}
import dataclasses
import time
import uuid
from collections.abc import Callable

import pytest

from {{ cookiecutter.package_name }} import backend, config
{% if cookiecutter.framework == "aiohttp" %}
from {{ cookiecutter.package_name }}.aio.state import AsyncRedisState
{% endif %}
from {{ cookiecutter.package_name }}.breaker import Breaker, GuardedLocks, GuardedState
from {{ cookiecutter.package_name }}.errors import BackendUnavailable, Busy
from {{ cookiecutter.package_name }}.locks import RedisLocks, Watchdog
from {{ cookiecutter.package_name }}.ratelimit import ClientRateLimit, RedisRateLimiter, TrustedProxies
from {{ cookiecutter.package_name }}.state import RedisState
from stack import procs

WAIT = 0.3


def settings_for(port: int, connections: int = 1) -> config.Settings:
    """A worker's settings with `connections` per pool and a short wait for one."""
    return dataclasses.replace(
        config.load(),
        redis_url=f"redis://127.0.0.1:{port}/0",
        redis_timeout=WAIT,
        redis_connections=connections,
    )


def prefix() -> str:
    return f"pool-{uuid.uuid4().hex[:8]}"


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_no_free_connection_is_busy_and_leaves_the_breaker_alone(redis_server) -> None:
    client = backend.make_client(settings_for(redis_server.port))
    breaker = Breaker(60.0)
    raw = RedisState(client, prefix())
    state = GuardedState(raw, breaker)
    assert state.incr("n") == 1
    held = client.connection_pool.get_connection()  # the pool's one connection
    try:
        started = time.monotonic()
        with pytest.raises(Busy) as refused:
            state.incr("n")
        waited = time.monotonic() - started
        assert refused.value.retry_after == 1
        assert WAIT * 0.9 <= waited < WAIT + 2, waited
        assert breaker.closed, "a full pool opened the breaker"
        # Nor does it close an open breaker: the store was not asked.
        with pytest.raises(BackendUnavailable), breaker.guard("test"):
            raise BackendUnavailable("TimeoutError")
        with pytest.raises(Busy), breaker.guard("test", refuse=False):
            raw.incr("n")
        assert not breaker.closed
    finally:
        client.connection_pool.release(held)
    assert raw.get_counter("n") == 1, "a Busy call counted"


def test_a_redis_that_does_not_answer_is_still_backend_unavailable() -> None:
    client = backend.make_client(settings_for(procs.free_port()))
    with pytest.raises(BackendUnavailable):
        RedisState(client, prefix()).incr("n")


def test_the_rate_limit_answers_busy_instead_of_failing_open(redis_server) -> None:
    client = backend.make_client(settings_for(redis_server.port))
    limit = ClientRateLimit(
        RedisRateLimiter(client, prefix(), rate=1, burst=1), TrustedProxies(""), pause=60
    )
    peer = "192.0.2.1"
    held = client.connection_pool.get_connection()
    try:
        with pytest.raises(Busy):
            limit.check(peer, None)
        assert not limit.fail_open.paused(), "a full pool made the rate limit fail open"
    finally:
        client.connection_pool.release(held)
    limit.check(peer, None)  # the one request of the burst


{% if cookiecutter.framework == "aiohttp" %}
def test_async_no_free_connection_is_busy(redis_server) -> None:
    async def scenario() -> None:
        client = backend.make_async_client(settings_for(redis_server.port))
        try:
            state = AsyncRedisState(client, prefix())
            assert await state.incr("n") == 1
            held = await client.connection_pool.get_connection()
            try:
                with pytest.raises(Busy):
                    await state.incr("n")
            finally:
                await client.connection_pool.release(held)
            assert await state.incr("n") == 2
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_async_a_redis_that_does_not_answer_is_still_backend_unavailable() -> None:
    async def scenario() -> None:
        client = backend.make_async_client(settings_for(procs.free_port()))
        try:
            with pytest.raises(BackendUnavailable):
                await AsyncRedisState(client, prefix()).incr("n")
        finally:
            await client.aclose()

    asyncio.run(scenario())


{% endif %}
def test_renewals_have_connections_of_their_own(redis_server) -> None:
    settings = settings_for(redis_server.port)
    client = backend.make_client(settings)
    renewals = backend.make_client(settings, backend.RENEWAL_CONNECTIONS)
    locks = GuardedLocks(RedisLocks(client, prefix(), renewals=renewals), Breaker(60.0))
    lease = locks.acquire("kept", ttl=0.6, wait=0)
    held = client.connection_pool.get_connection()
    watchdog = Watchdog(locks, lease, ttl=0.6)
    watchdog.start()
    try:
        # Well past the lease, every request connection in use all along.
        wait_for(lambda: watchdog.extensions >= 4, "four renewals with the request pool full")
        assert watchdog.failure is None, watchdog.failure
    finally:
        watchdog.stop()
        client.connection_pool.release(held)
    locks.write_fenced(lease, "v", "still mine")
    assert locks.release(lease)


def test_a_renewal_that_finds_no_connection_tries_again(redis_server) -> None:
    client = backend.make_client(settings_for(redis_server.port))
    locks = RedisLocks(client, prefix())  # renewals share the request pool here
    lease = locks.acquire("shared", ttl=6, wait=0)
    watchdog = Watchdog(locks, lease, ttl=6)
    held = client.connection_pool.get_connection()
    watchdog.start()
    try:
        wait_for(lambda: watchdog.failure is not None, "a renewal meeting the full pool")
        assert watchdog.failure.startswith("Busy"), watchdog.failure
        assert watchdog.running, "a full pool ended the watchdog"
        client.connection_pool.release(held)
        held = None
        wait_for(lambda: watchdog.extensions >= 1, "a renewal once a connection is free")
    finally:
        watchdog.stop()
        if held is not None:
            client.connection_pool.release(held)
    locks.write_fenced(lease, "v", "still mine")
    assert locks.release(lease)
