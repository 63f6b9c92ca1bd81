"""Clients that are not load: slow downloaders, and a fast endpoint probed on a schedule.

A slow client is what kills a sync worker that sends a file itself. Eight of
them hold their downloads open for the whole measure, reading at a fixed
pace; meanwhile a fast endpoint is asked on a fixed schedule (open loop: a
request is sent on time whether or not the previous ones were answered), so
a stalled service shows as unanswered requests rather than as fewer sent.
"""

from __future__ import annotations

import multiprocessing
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
    """`count` clients downloading `path` again and again, each at a slow pace.

    They run in a process of their own: as threads of this one they took the
    GIL from the probe's threads and made the service look slower than it was.
    """

    def __init__(self, base_url: str, path: str, count: int) -> None:
        context = multiprocessing.get_context("fork")
        self._receiving = context.Event()
        self._stop = context.Event()
        self._process = context.Process(
            target=_slow_clients,
            args=(base_url, path, count, self._receiving, self._stop),
            name="slow-downloads",
            daemon=True,
        )

    def __enter__(self) -> SlowDownloads:
        self._process.start()
        # The measure starts once every client receives its body.
        self._receiving.wait(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(timeout=15)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _slow_clients(base_url: str, path: str, count: int, receiving, stop) -> None:
    parts = urlsplit(base_url)
    started = threading.Semaphore(0)

    def client() -> None:
        first = True
        while not stop.is_set():
            try:
                _slow_download(parts, path, stop, started if first else None)
            except OSError:
                time.sleep(0.1)
            first = False

    threads = [threading.Thread(target=client, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for _ in threads:
        if not started.acquire(timeout=30):
            break
    receiving.set()
    for thread in threads:
        thread.join()


def _slow_download(parts, path: str, stop, started: threading.Semaphore | None) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RECEIVE_BUFFER)
    sock.settimeout(PROBE_TIMEOUT_SECONDS * 6)
    with sock:
        sock.connect((parts.hostname, parts.port))
        host = parts.netloc
        head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode("ascii"))
        began = time.monotonic()
        received = 0
        while not stop.is_set():
            chunk = sock.recv(16 * 1024)
            if not chunk:
                return
            if started is not None and received == 0:
                started.release()
            received += len(chunk)
            ahead = began + received / SLOW_BYTES_PER_SECOND - time.monotonic()
            if ahead > 0:
                stop.wait(ahead)


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
    guard = threading.Lock()

    def one() -> None:
        started = time.perf_counter()
        try:
            ok = requests.get(url, timeout=PROBE_TIMEOUT_SECONDS).ok
        except requests.RequestException:
            ok = False
        if ok:
            with guard:
                latencies.append((time.perf_counter() - started) * 1000)

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
