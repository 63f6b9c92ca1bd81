"""Async twins of `ratelimit`: the same GCRA script, client rule and fail-open pause."""

from __future__ import annotations

from typing import Protocol

import redis.asyncio

from ..errors import BackendUnavailable, StoreFull, unavailable_on
from ..ratelimit import (
    FailOpen,
    RateLimiter,
    RedisRateLimiter,
    TrustedProxies,
    client_of,
    gcra_args,
    redis_key,
    refuse_after,
)
from ..state import REDIS_UNAVAILABLE
from .offload import Offload


class AsyncRateLimiter(Protocol):
    """`ratelimit.RateLimiter`, awaited."""

    async def admit(self, key: str) -> float: ...


@unavailable_on(*REDIS_UNAVAILABLE)
class AsyncRedisRateLimiter:
    def __init__(self, client: redis.asyncio.Redis, prefix: str, rate: float, burst: int) -> None:
        self._admit = client.register_script(RedisRateLimiter.ADMIT)
        self._prefix = prefix
        self._args = gcra_args(rate, burst)

    async def admit(self, key: str) -> float:
        wait_us = await self._admit(keys=[redis_key(self._prefix, key)], args=self._args)
        return int(wait_us) / 1_000_000


class OffloadedRateLimiter:
    """A sync `RateLimiter` (the embedded SQLite one) run on `offload`."""

    def __init__(self, limiter: RateLimiter, offload: Offload) -> None:
        self._limiter = limiter
        self._offload = offload

    async def admit(self, key: str) -> float:
        return await self._offload(self._limiter.admit, key)


class AsyncClientRateLimit:
    """`ratelimit.ClientRateLimit`, awaited: one budget per client, failing open."""

    def __init__(self, limiter: AsyncRateLimiter, proxies: TrustedProxies, pause: float) -> None:
        self.limiter = limiter
        self.proxies = proxies
        self.fail_open = FailOpen(pause)

    async def check(self, peer: str, forwarded_for: str | None) -> None:
        """Count a request from `peer`; raise `RateLimited` past its client's budget."""
        if self.fail_open.paused():
            return
        try:
            wait = await self.limiter.admit(client_of(peer, forwarded_for, self.proxies))
        except (BackendUnavailable, StoreFull) as exc:
            self.fail_open.pause_after(exc)
            return
        refuse_after(wait)
