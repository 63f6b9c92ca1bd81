"""The shared rate limit: one budget per client, whatever process or host asks.

Both stores run against the real thing: a redis-server this module starts on a
free port (stopped by pid at the end) and the embedded SQLite database.
Several forked processes hammer one key at once; what they are admitted
together never exceeds burst + rate * elapsed. A per-process counter, the
naive limiter, is run through the same proof and must break it.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import redis

from {{ cookiecutter.package_name }} import config, embedded, http_errors, ratelimit
from {{ cookiecutter.package_name }}.errors import ConfigError, RateLimited

PROCESSES = 4
# How long the processes hammer one key, and the limit they hammer.
HAMMER_SECONDS = 2.0
RATE = 20.0
BURST = 10


@pytest.fixture(scope="module")
def redis_port(redis_server) -> int:
    return redis_server.port


def redis_client(port: int, timeout: float = 5.0) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=timeout, socket_connect_timeout=timeout)


class LocalRateLimiter:
    """The naive limiter: the same GCRA, counted in this process's memory."""

    def __init__(self, rate: float, burst: int) -> None:
        self.interval, self.burst = 1 / rate, burst
        self.tat: dict[str, float] = {}

    def admit(self, key: str) -> float:
        now = time.monotonic()
        tat = max(self.tat.get(key, now), now) + self.interval
        wait = tat - self.burst * self.interval - now
        if wait > 0:
            return wait
        self.tat[key] = tat
        return 0.0


def make_limiter(kind: str, where: int | Path, rate: float = RATE, burst: int = BURST):
    """A limiter opened in the calling process (after any fork)."""
    if kind == "redis":
        return ratelimit.RedisRateLimiter(redis_client(where), "test", rate, burst)
    if kind == "sqlite":
        return ratelimit.SqliteRateLimiter(embedded.open_database(where), rate, burst)
    return LocalRateLimiter(rate, burst)


@pytest.fixture(params=["redis", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int | Path]:
    """(kind, where): a Redis port or an embedded data directory."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_port")
    return "sqlite", tmp_path / "data"


def test_burst_passes_at_once_then_one_per_interval(store) -> None:
    # One a second: the burst's own calls, however slow a loaded machine makes them,
    # must not last an interval, or a token would come back during the burst.
    rate = 1.0
    limiter = make_limiter(*store, rate=rate, burst=BURST)
    key = f"burst-{os.getpid()}-{time.monotonic_ns()}"
    assert [limiter.admit(key) for _ in range(BURST)] == [0.0] * BURST
    wait = limiter.admit(key)
    # The next one is due one interval after the burst; the refused call spent nothing.
    assert 0 < wait <= 1 / rate + 1e-3, wait
    time.sleep(wait + 0.01)
    assert limiter.admit(key) == 0.0
    assert limiter.admit(key) > 0


def test_clients_have_budgets_of_their_own(store) -> None:
    limiter = make_limiter(*store, rate=0.01, burst=2)
    first, second = f"one-{time.monotonic_ns()}", f"two-{time.monotonic_ns()}"
    waits = [limiter.admit(first) for _ in range(3)]
    # At 0.01 a second, the third request is due in about 100 s: Retry-After says so.
    assert waits[:2] == [0.0, 0.0] and 90 < waits[2] <= 100.001, waits
    assert limiter.admit(second) == 0.0


def test_redis_keys_expire_once_their_budget_is_full_again(redis_port) -> None:
    limiter = ratelimit.RedisRateLimiter(redis_client(redis_port), "ttl", rate=10, burst=3)
    limiter.admit("client")
    limiter.admit("client")
    ttl_ms = redis_client(redis_port).pttl("ttl:ratelimit:client")
    # Two requests take 0.2 s to flow back in at 10 a second; then the key says nothing.
    assert 0 < ttl_ms <= 200, ttl_ms


def _hammer(kind, where, key, start, deadline, results) -> None:
    limiter = make_limiter(kind, where)
    start.wait(30)
    admitted = asked = 0
    while time.time() < deadline.value:
        asked += 1
        if limiter.admit(key) == 0:
            admitted += 1
    results.put((admitted, asked))


def hammer(kind: str, where: int | Path) -> tuple[int, int, float]:
    """PROCESSES processes ask on one key for HAMMER_SECONDS: (admitted, asked, elapsed)."""
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(PROCESSES + 1), context.Queue()
    deadline = context.Value("d", 0.0)
    key = f"hammer-{kind}-{time.monotonic_ns()}"
    workers = [
        context.Process(target=_hammer, args=(kind, where, key, start, deadline, results))
        for _ in range(PROCESSES)
    ]
    for proc in workers:
        proc.start()
    # Every process has opened its store; the clock starts before any is admitted.
    began = time.monotonic()
    deadline.value = time.time() + HAMMER_SECONDS
    start.wait(30)
    counts = [results.get(timeout=60) for _ in workers]
    elapsed = time.monotonic() - began
    for proc in workers:
        proc.join(30)
        assert proc.exitcode == 0
    return sum(a for a, _ in counts), sum(n for _, n in counts), elapsed


def test_processes_together_never_exceed_burst_plus_rate_times_elapsed(store, tmp_path) -> None:
    admitted, asked, elapsed = hammer(*store)
    bound = BURST + RATE * elapsed
    seen = f"{admitted} of {asked} admitted in {elapsed:.2f}s"
    assert admitted <= bound, f"{seen}; at most {bound:.1f}"
    # The budget did flow back in while they hammered (one interval is 50 ms).
    assert admitted > BURST, seen


def test_the_proof_fails_on_a_limit_counted_per_process(tmp_path) -> None:
    """Teeth: the same hammering against per-process counts breaks the bound."""
    admitted, asked, elapsed = hammer("local", tmp_path)
    assert admitted > BURST + RATE * elapsed, f"{admitted} of {asked} admitted in {elapsed:.2f}s"


def test_trusted_proxies_name_the_client() -> None:
    nginx = ratelimit.TrustedProxies("127.0.0.1,::1,10.1.0.0/16")

    def client(peer: str, forwarded: str | None = None) -> str:
        return ratelimit.client_of(peer, forwarded, nginx)

    # Over gunicorn's unix socket (REMOTE_ADDR empty) only nginx can connect.
    assert client("", "203.0.113.9") == "203.0.113.9"
    assert client("10.1.2.3", "203.0.113.9") == "203.0.113.9"
    # Behind more proxies, the last address is the one the trusted proxy saw.
    assert client("127.0.0.1", "6.6.6.6, 203.0.113.9") == "203.0.113.9"
    # A peer we do not trust cannot name someone else to get a fresh budget.
    assert client("198.51.100.7", "203.0.113.9") == "198.51.100.7"
    assert client("198.51.100.7") == "198.51.100.7"
    # One IPv6 client holds a /64; an IPv4-mapped address is the IPv4 client.
    assert client("", "2001:db8:1:2:aaaa::1") == client("", "2001:db8:1:2:bbbb::2")
    assert client("", "2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client("", "::ffff:203.0.113.9") == "203.0.113.9"
    # A unix socket without the header: every such caller is one local client.
    assert client("") == "peer:"
    # "*" trusts every peer (compose: nginx is another container).
    anywhere = ratelimit.TrustedProxies("*")
    assert ratelimit.client_of("198.51.100.7", "203.0.113.9", anywhere) == "203.0.113.9"


def test_forwarded_allow_ips_is_checked_at_start(monkeypatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1,not-an-address")
    with pytest.raises(ConfigError, match="FORWARDED_ALLOW_IPS"):
        ratelimit.TrustedProxies(config.load().forwarded_allow_ips)


def test_past_the_budget_the_answer_is_429_with_retry_after(tmp_path) -> None:
    limit = ratelimit.ClientRateLimit(
        ratelimit.SqliteRateLimiter(embedded.open_database(tmp_path), rate=0.5, burst=1),
        ratelimit.TrustedProxies("127.0.0.1"),
        pause=1.0,
    )
    limit.check("127.0.0.1", None)
    with pytest.raises(RateLimited) as refused:
        limit.check("127.0.0.1", None)
    status, body, headers = http_errors.answer(refused.value)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    # Due in 2 s at most: a whole number of seconds, at least 1.
    assert headers["Retry-After"] in {"1", "2"}


def test_fails_open_when_redis_does_not_answer_and_asks_again_later(redis_port) -> None:
    """A paused Redis costs one timeout, then requests pass without asking for `pause` s."""
    pause = 1.5
    limiter = ratelimit.RedisRateLimiter(redis_client(redis_port, 0.5), "open", 0.01, burst=1)
    limit = ratelimit.ClientRateLimit(limiter, ratelimit.TrustedProxies(""), pause)
    peer = "192.0.2.1"
    limit.check(peer, None)  # the burst of one
    with pytest.raises(RateLimited):
        limit.check(peer, None)
    pid = int(redis_client(redis_port).info("server")["process_id"])
    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        limit.check(peer, None)  # no answer: let through
        first = time.monotonic() - began
        began = time.monotonic()
        for _ in range(20):
            limit.check(peer, None)  # within the pause: let through without asking
        later = time.monotonic() - began
    finally:
        os.kill(pid, signal.SIGCONT)
    assert first >= 0.4, f"the first check did not wait for Redis ({first:.2f}s)"
    assert later < first / 2, f"20 checks in the pause took {later:.2f}s, one timeout {first:.2f}s"
    time.sleep(pause)
    with pytest.raises(RateLimited):  # asked again: the budget was spent all along
        limit.check(peer, None)


def test_open_limit_uses_the_configured_backend(monkeypatch, redis_port, tmp_path) -> None:
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "0.5")
    monkeypatch.setenv("RATE_LIMIT_BURST", "2")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    backends = [
        (f"redis://127.0.0.1:{redis_port}/0", ratelimit.RedisRateLimiter),
        ("", ratelimit.SqliteRateLimiter),
    ]
    for url, kind in backends:
        monkeypatch.setenv("REDIS_URL", url)
        monkeypatch.setenv("KEY_PREFIX", f"open-{time.monotonic_ns()}")
        limit = ratelimit.open_limit(config.load())
        assert isinstance(limit.limiter, kind)
        peer = "192.0.2.2"
        limit.check(peer, None)
        limit.check(peer, None)
        with pytest.raises(RateLimited) as refused:
            limit.check(peer, None)
        assert 1 <= refused.value.retry_after <= math.ceil(1 / 0.5)
