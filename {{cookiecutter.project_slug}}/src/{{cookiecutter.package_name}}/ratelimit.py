"""A per-client rate limit on expensive requests, counted once for every worker and host.

A counter in a worker's memory lets a client through N times the rate with N
workers, and N times again with N hosts. Here the count lives where the shared
state does: one Lua script in Redis (one atomic step on Redis's own clock, so
the hosts' clocks do not matter), or one SQLite statement in the embedded
store (one host; SQLite's clock, read under the write lock). Both run GCRA, the
generic cell rate algorithm: one timestamp per client, equivalent to a bucket
of `burst` requests refilled at `rate` a second, with no refill job and no
read-then-write in Python.

Why not a library: the `limits` package (under flask-limiter) reads the calling
host's clock only in its moving window; its fixed window and sliding window
counter run on Redis's key expiry. But those two count in windows, not one
bucket: a fixed window lets twice its limit through across a window's edge,
and the sliding counter estimates the previous window's share; neither is a
burst refilled at a steady rate, nor answers how long until the next request
passes. And `limits` has no store for the embedded backend (its stores are
one process's memory, Redis, memcached and MongoDB). django-ratelimit counts
in Django's cache and serves one framework.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from typing import Protocol

import redis

from . import backend, embedded
from .config import Settings
from .errors import BackendUnavailable, ConfigError, RateLimited, StoreFull, unavailable_on
from .state import REDIS_UNAVAILABLE

# Expired SQLite rows (a client idle for burst / rate seconds) are deleted this often.
SWEEP_EVERY_SECONDS = 60.0
# An IPv6 client usually holds a whole /64: counting per address would let it
# rotate through 2**64 budgets.
IPV6_CLIENT_PREFIX = 64
# A key is never longer than this, whatever a proxy sent.
MAX_CLIENT_CHARS = 64

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    """A shared budget per key: `burst` requests at once, `rate` a second after that.

    `admit` spends one request of `key`'s budget and returns 0, or spends nothing
    and returns the seconds until one would be admitted. It raises
    `errors.BackendUnavailable` when the store does not answer.
    """

    def admit(self, key: str) -> float: ...


@unavailable_on(*REDIS_UNAVAILABLE)
class RedisRateLimiter:
    # TIME is Redis's clock, the same for every host; the numbers are microseconds,
    # exact in Lua's doubles. string.format('%d') because Lua would write a large
    # number as "1.7e+15" when handing it to SET, losing the microseconds.
    ADMIT = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
    tat = now
end
local new_tat = tat + interval
local wait = new_tat - burst * interval - now
if wait > 0 then
    return wait
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
return 0
"""

    def __init__(self, client: redis.Redis, prefix: str, rate: float, burst: int) -> None:
        self._admit = client.register_script(self.ADMIT)
        self._prefix = prefix
        self._args = gcra_args(rate, burst)

    def admit(self, key: str) -> float:
        wait_us = self._admit(keys=[redis_key(self._prefix, key)], args=self._args)
        return int(wait_us) / 1_000_000


def redis_key(prefix: str, client: str) -> str:
    return f"{prefix}:ratelimit:{client}"


def gcra_args(rate: float, burst: int) -> list[int]:
    """ADMIT's arguments: the interval in microseconds and the burst."""
    # Rounded up: the limit may be a hair stricter than asked, never looser.
    return [math.ceil(1_000_000 / rate), burst]


# A row is (key, tat: the theoretical arrival time, seconds since the epoch; the
# time of the last check; whether it admitted). `excluded.checked_at` carries
# SQLite's clock, read once inside the statement, to the update; every SET
# expression sees the row as it was before the update.
_SQLITE_TABLE = """
CREATE TABLE IF NOT EXISTS rate_limits (
    key TEXT PRIMARY KEY, tat REAL NOT NULL, checked_at REAL NOT NULL, admitted INTEGER NOT NULL
)
"""
# SQLite's clock in seconds since the epoch (to the millisecond): julianday('now') is
# read once per statement, so every use within one statement agrees.
_SQLITE_ADMIT = (
    "INSERT INTO rate_limits (key, tat, checked_at, admitted) "
    "SELECT ?1, clock.now + ?2, clock.now, 1 "
    "FROM (SELECT (julianday('now') - 2440587.5) * 86400.0 AS now) AS clock "
    # "WHERE true" tells SQLite's parser that ON CONFLICT belongs to the INSERT.
    "WHERE true "
    "ON CONFLICT (key) DO UPDATE SET "
    "checked_at = excluded.checked_at, "
    "admitted = max(tat, excluded.checked_at) + ?2 <= excluded.checked_at + ?3 * ?2, "
    "tat = CASE WHEN max(tat, excluded.checked_at) + ?2 <= excluded.checked_at + ?3 * ?2 "
    "THEN max(tat, excluded.checked_at) + ?2 ELSE tat END "
    "RETURNING admitted, tat + ?2 - ?3 * ?2 - checked_at"
)
# A row whose tat has passed says no more than no row at all.
_SQLITE_SWEEP = "DELETE FROM rate_limits WHERE tat < (julianday('now') - 2440587.5) * 86400.0"


@unavailable_on(*embedded.SQLITE_UNAVAILABLE)
class SqliteRateLimiter:
    """The same GCRA in one upsert on the embedded database, for one host.

    The table is created on first use, not at worker start: a database busy at
    that moment must cost a request's limit (see `ClientRateLimit`), not the
    worker's boot, which would stop gunicorn.
    """

    def __init__(self, db: embedded.Database, rate: float, burst: int) -> None:
        self._db = db
        self._interval = 1 / rate
        self._burst = burst
        self._created = False
        self._next_sweep = 0.0

    def admit(self, key: str) -> float:
        if not self._created:
            self._db.changes(_SQLITE_TABLE)
            self._created = True
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_EVERY_SECONDS
            self._db.changes(_SQLITE_SWEEP)
        admitted, wait = self._db.returning(_SQLITE_ADMIT, (key, self._interval, self._burst))
        return 0.0 if admitted else max(float(wait), 0.0)


class TrustedProxies:
    """Which peers may name the client in X-Forwarded-For.

    The same rule and the same setting (FORWARDED_ALLOW_IPS) as gunicorn's for
    X-Forwarded-Proto: a peer over a unix socket (an empty address) or one of
    the listed addresses or networks; "*" trusts every peer. nginx, the edge,
    overwrites X-Forwarded-For with the address it was reached from
    (deploy/nginx/app.conf.template), so a client cannot forge it through
    nginx. A client that reaches gunicorn directly bypasses nginx, so its own
    header is believed only when it connects from a trusted address (the
    loopback default: people on the host itself, as with `make run`).
    """

    def __init__(self, spec: str) -> None:
        entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
        self.everyone = "*" in entries
        try:
            self.networks = [ipaddress.ip_network(entry) for entry in entries if entry != "*"]
        except ValueError as exc:
            raise ConfigError(f"FORWARDED_ALLOW_IPS cannot be used: {exc}.") from None

    def trust(self, peer: str) -> bool:
        if not peer or self.everyone:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def client_of(peer: str, forwarded_for: str | None, proxies: TrustedProxies) -> str:
    """The client a request is counted for: its address, as the trusted proxy saw it.

    `peer` is the address the connection came from (empty over a unix socket);
    `forwarded_for` the request's X-Forwarded-For header, if any.
    """
    client = peer
    forwarded = forwarded_for
    if forwarded and proxies.trust(peer):
        # nginx sends one address; behind more proxies, the last one is what the
        # nearest (trusted) proxy saw; the ones before it the client could write.
        client = forwarded.rsplit(",", 1)[-1].strip()
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        # A unix socket with no header ("") or a proxy's own notation: one key each.
        return "peer:" + client[:MAX_CLIENT_CHARS]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


class ClientRateLimit:
    """What a handler asks: may this request's client go on?

    One budget per client for every expensive endpoint, not one per endpoint:
    what it protects (disk, CPU, workers, the backend) is drawn on by all of
    them alike, and per-endpoint budgets would multiply what one client may
    take by the number of endpoints.

    When the store does not answer, requests go through (fail open) and the
    store is not asked again for `pause` seconds. Failing closed would turn a
    backend outage into 503s on exports and tasks, which do not need the
    backend; requests that do need it answer 503 by themselves; and the pause
    keeps a stalled store from costing every request a timeout. The cost: no
    limit for the length of an outage, when the export quota and the disk
    reserve still bound the disk, and the worker count bounds the CPU. A worker
    with no free connection to the store is not an outage but overload: its
    `errors.Busy` (503 with Retry-After) goes to the client, never through.
    """

    def __init__(self, limiter: RateLimiter, proxies: TrustedProxies, pause: float) -> None:
        self.limiter = limiter
        self.proxies = proxies
        self.fail_open = FailOpen(pause)

    def check(self, peer: str, forwarded_for: str | None) -> None:
        """Count a request from `peer`; raise `RateLimited` past its client's budget."""
        if self.fail_open.paused():
            return
        try:
            wait = self.limiter.admit(client_of(peer, forwarded_for, self.proxies))
        except (BackendUnavailable, StoreFull) as exc:
            self.fail_open.pause_after(exc)
            return
        refuse_after(wait)


class FailOpen:
    """After the store failed, requests go through unchecked for `pause` seconds."""

    def __init__(self, pause: float) -> None:
        self._pause = pause
        self._paused_until = 0.0
        self._guard = threading.Lock()

    def paused(self) -> bool:
        """True while requests go through unchecked, after the store failed."""
        return time.monotonic() < self._paused_until

    def pause_after(self, exc: BackendUnavailable | StoreFull) -> None:
        """The store did not answer, or had no room: let requests through for `pause` seconds."""
        with self._guard:
            if time.monotonic() >= self._paused_until:
                self._paused_until = time.monotonic() + self._pause
                log.warning("rate limit not enforced for %g s: %s", self._pause, exc.reason)


def refuse_after(wait: float) -> None:
    """Raise `RateLimited` if the limiter said to wait."""
    if wait > 0:
        raise RateLimited(wait)


def open_limit(settings: Settings, client: redis.Redis | None = None) -> ClientRateLimit:
    """This process's rate limit, on the same backend (and Redis `client`) as its state."""
    rate, burst = settings.rate_limit_per_second, settings.rate_limit_burst
    limiter: RateLimiter
    if settings.redis_url:
        client = client or backend.make_client(settings)
        limiter = RedisRateLimiter(client, settings.key_prefix, rate, burst)
    else:
        limiter = open_embedded_limiter(settings)
    proxies = TrustedProxies(settings.forwarded_allow_ips)
    return ClientRateLimit(limiter, proxies, settings.backend_retry_after)


def open_embedded_limiter(settings: Settings) -> SqliteRateLimiter:
    db = embedded.open_database(settings.data_dir)
    return SqliteRateLimiter(db, settings.rate_limit_per_second, settings.rate_limit_burst)
