"""A slow download outlives gunicorn's timeout without costing a worker: nginx serves it.

gunicorn here kills a worker silent for 2 s. A client reads a 64 MiB export
through a small receive window for about 5 s while another thread keeps
asking for quick answers; the file must arrive intact, every quick answer
must be 200, and gunicorn must never have killed a worker.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from urllib.parse import urlsplit

from client import Client, assert_json, unique

SIZE = 64 * (1 << 20)
DOWNLOAD_SECONDS = 5.0
GUNICORN_TIMEOUT = 2.0


def slow_download(
    base_url: str, path: str, seconds: float
) -> tuple[int, dict[str, str], str, int, float]:
    """GET `path` over a small receive window, paced to take at least `seconds`."""
    parts = urlsplit(base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(10)
    started = time.monotonic()
    try:
        sock.connect((parts.hostname, parts.port))
        request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed before the headers ended: {raw!r}"
            raw += chunk
        head, body_start = raw.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        length = int(headers.get("content-length", SIZE))
        digest = hashlib.sha256(body_start)
        received = len(body_start)
        body_began = time.monotonic()
        while received < length:
            chunk = sock.recv(16 * 1024)
            if not chunk:
                break
            digest.update(chunk)
            received += len(chunk)
            # Pace the reads so the whole body takes `seconds`.
            ahead = body_began + seconds * received / length - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            assert time.monotonic() - started < seconds * 4, "slow download did not finish in time"
        return status, headers, digest.hexdigest(), received, time.monotonic() - started
    finally:
        sock.close()


def test_slow_download_does_not_cost_a_worker(short_timeout_stack) -> None:
    client = Client(short_timeout_stack.base_url)
    log = short_timeout_stack.gunicorn_log
    meta = assert_json(
        client.post("/api/exports", json={"size_bytes": SIZE, "label": unique("slow")}), 201
    )

    fast: list[str] = []
    done = threading.Event()

    def keep_asking() -> None:
        paths = ("/healthz", "/api/worker")
        i = 0
        while not done.is_set():
            path = paths[i % 2]
            i += 1
            try:
                resp = client.get(path, timeout=GUNICORN_TIMEOUT)
                fast.append("ok" if resp.status_code == 200 else f"{path} -> {resp.status_code}")
            except Exception as exc:  # a timeout or reset is a failed quick request
                fast.append(f"{path} -> {exc!r}")
            done.wait(0.1)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        status, headers, sha, received, took = slow_download(
            short_timeout_stack.base_url, meta["download_url"], DOWNLOAD_SECONDS
        )
    finally:
        done.set()
        asker.join(timeout=10)

    assert status == 200, (status, headers)
    assert headers.get("content-disposition", "").startswith("attachment"), headers
    assert received == SIZE, f"received {received} of {SIZE} bytes"
    assert sha == meta["sha256"], "the slow download arrived corrupted"
    assert took > 2 * GUNICORN_TIMEOUT, f"the download took only {took:.1f}s: no proof"
    failures = [f for f in fast if f != "ok"]
    assert not failures, f"quick requests failed during the slow download: {failures}"
    assert len(fast) >= 20, f"only {len(fast)} quick requests ran during {took:.1f}s"

    text = log.read_text(errors="replace")
    for sign in ("WORKER TIMEOUT", "was sent SIGABRT", "was sent SIGKILL"):
        assert sign not in text, f"{sign!r} in the gunicorn log:\n{text[-3000:]}"

    # nginx sent the bytes (X-Accel-Redirect): its access log shows the
    # application's answer to the download had an empty body (ubytes=0).
    download_path = meta["download_url"]
    answered = [
        line
        for line in short_timeout_stack.nginx_access_log.read_text(errors="replace").splitlines()
        if f"GET {download_path} " in line
    ]
    assert answered, f"nginx never logged GET {download_path}"
    assert all(" ubytes=0 " in line for line in answered), answered
