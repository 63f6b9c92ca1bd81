"""What each aiohttp worker opens once, inside its own event loop.

The async twin of `runtime`: a redis.asyncio client belongs to the loop that
made it (its pool has no pid check, and a second loop fails with "Event loop
is closed"), so nothing here is opened at import or in the gunicorn master:
the app opens it in its cleanup context, in the worker's loop, and closes
it there when the worker stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .. import backend, capacity, config, ratelimit, runtime
from ..breaker import Breaker
from ..exports import ExportStore
from .breaker import GuardedAsyncLocks, GuardedAsyncState
from .locks import AsyncLocks, AsyncRedisLocks, OffloadedLocks
from .offload import FILE_THREADS, STORE_THREADS, Offload
from .ratelimit import (
    AsyncClientRateLimit,
    AsyncRateLimiter,
    AsyncRedisRateLimiter,
    OffloadedRateLimiter,
)
from .state import AsyncRedisState, AsyncState, OffloadedState


@dataclass(frozen=True)
class AsyncRuntime:
    settings: config.Settings
    state: AsyncState
    locks: AsyncLocks
    # The sync store: its calls are blocking file work, run on `files`.
    exports: ExportStore
    limiter: AsyncClientRateLimit
    # This host's slots for long work: taking one never waits (a non-blocking flock),
    # so it is taken on the loop.
    slots: capacity.Slots
    # The embedded backend's calls.
    store: Offload
    # Export writes and reads.
    files: Offload


@contextlib.asynccontextmanager
async def opened(settings: config.Settings) -> AsyncIterator[AsyncRuntime]:
    """Open the runtime in the running loop; close it at the end."""
    async with contextlib.AsyncExitStack() as stack:
        store = Offload(STORE_THREADS, "store")
        stack.callback(store.close)
        files = Offload(FILE_THREADS, "files")
        stack.callback(files.close)
        state: AsyncState
        locks: AsyncLocks
        limiter: AsyncRateLimiter
        if settings.redis_url:
            # One pool for every request's calls, sized in `config`; renewals have their own.
            client = backend.make_async_client(settings)
            stack.push_async_callback(client.aclose)
            renewals = backend.make_async_client(settings, backend.RENEWAL_CONNECTIONS)
            stack.push_async_callback(renewals.aclose)
            prefix = settings.key_prefix
            state = AsyncRedisState(client, prefix)
            locks = AsyncRedisLocks(
                client, prefix, renewals=renewals, record_ttl=settings.lock_record_ttl
            )
            rate, burst = settings.rate_limit_per_second, settings.rate_limit_burst
            limiter = AsyncRedisRateLimiter(client, prefix, rate, burst)
        else:
            sync_state, sync_locks = await store(backend.open_embedded, settings)
            state, locks = OffloadedState(sync_state, store), OffloadedLocks(sync_locks, store)
            sync_limiter = await store(ratelimit.open_embedded_limiter, settings)
            limiter = OffloadedRateLimiter(sync_limiter, store)
        # One breaker for state and locks, as in the sync runtime.
        guard = Breaker(settings.backend_retry_after)
        proxies = ratelimit.TrustedProxies(settings.forwarded_allow_ips)
        yield AsyncRuntime(
            settings=settings,
            state=GuardedAsyncState(state, guard),
            locks=GuardedAsyncLocks(locks, guard),
            exports=runtime.open_exports(settings),
            limiter=AsyncClientRateLimit(limiter, proxies, settings.backend_retry_after),
            slots=capacity.open_slots(settings),
            store=store,
            files=files,
        )
