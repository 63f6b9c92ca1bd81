"""Clients that are not load: slow downloaders, and a fast endpoint probed on a schedule.

A slow client is what kills a sync worker that sends a file itself. Eight of
them hold their downloads open for the whole measure, reading at a fixed
pace; meanwhile a fast endpoint is asked on a fixed schedule (open loop: a
request is sent on time whether or not the previous ones were answered), so
a stalled service shows as unanswered requests rather than as fewer sent.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

# A slow client's pace, and its receive buffer: small, so the server really waits.
SLOW_BYTES_PER_SECOND = 1 << 20
SLOW_RECEIVE_BUFFER = 64 * 1024
# A fast request not answered this long is counted as unanswered.
PROBE_TIMEOUT_SECONDS = 5.0


class SlowDownloads:
    """`count` clients downloading `path` again and again, each at a slow pace."""

    def __init__(self, base_url: str, path: str, count: int) -> None:
        self._parts = urlsplit(base_url)
        self._path = path
        self._stop = threading.Event()
        self._receiving = threading.Semaphore(0)
        self._threads = [
            threading.Thread(target=self._client, name=f"slow-{n}", daemon=True)
            for n in range(count)
        ]

    def __enter__(self) -> SlowDownloads:
        for thread in self._threads:
            thread.start()
        # The measure starts once every client receives its body.
        for _ in self._threads:
            if not self._receiving.acquire(timeout=30):
                break
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _client(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                self._download(first)
            except OSError:
                time.sleep(0.1)
            first = False

    def _download(self, signal_start: bool) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RECEIVE_BUFFER)
        sock.settimeout(PROBE_TIMEOUT_SECONDS * 6)
        with sock:
            sock.connect((self._parts.hostname, self._parts.port))
            host = self._parts.netloc
            head = f"GET {self._path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            sock.sendall(head.encode("ascii"))
            began = time.monotonic()
            received = 0
            while not self._stop.is_set():
                chunk = sock.recv(16 * 1024)
                if not chunk:
                    return
                if signal_start and received == 0:
                    self._receiving.release()
                received += len(chunk)
                ahead = began + received / SLOW_BYTES_PER_SECOND - time.monotonic()
                if ahead > 0:
                    self._stop.wait(ahead)


@dataclass(frozen=True)
class Probed:
    sent: int
    answered: int
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, float]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "answered_pct": round(100 * self.answered / self.sent, 1) if self.sent else 0.0,
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
        }


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(pct) - 1]


def probe(url: str, *, per_second: float, seconds: float) -> Probed:
    """GET `url` `per_second` times a second for `seconds`, on schedule; 2xx counts."""
    total = max(1, round(per_second * seconds))
    latencies: list[float] = []
    unanswered = 0
    guard = threading.Lock()

    def one() -> None:
        nonlocal unanswered
        started = time.perf_counter()
        try:
            ok = requests.get(url, timeout=PROBE_TIMEOUT_SECONDS).ok
        except requests.RequestException:
            ok = False
        with guard:
            if ok:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                unanswered += 1

    workers = int(per_second * PROBE_TIMEOUT_SECONDS) + 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
        begin = time.monotonic()
        for n in range(total):
            delay = begin + n / per_second - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one)
    return Probed(
        sent=total,
        answered=len(latencies),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
    )
