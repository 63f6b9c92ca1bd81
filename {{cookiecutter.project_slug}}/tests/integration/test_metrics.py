"""/metrics adds up every worker, exactly, whichever worker answers the scrape.

prometheus_client keeps its values in the process that changed them: with a
per-process registry each scrape shows the share of the one worker that
answered it, and a recycled worker takes its counts with it. These proofs send
N requests spread over several workers (by pid) and then read /metrics many
times through nginx: every read must show exactly N. Workers recycled by
`max_requests` during the load must lose nothing, and the series of dead
workers must be gone. The output must pass `promtool check metrics`, and nginx
must refuse every address the allow list does not name.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from client import TIMEOUT, Client, assert_error, assert_json, run_concurrently, unique
from prometheus_client.parser import text_string_to_metric_families
from stacks import EXTERNAL_BASE_URL, own_stack_or_skip

# /metrics adds up the workers of one host, and answers only the scrapers' network.
pytestmark = pytest.mark.skipif(
    bool(EXTERNAL_BASE_URL),
    reason="reads /metrics through a stack of its own: against BASE_URL, /metrics answers "
    "only METRICS_ALLOW_FROM (the compose network), one web container's workers each",
)

{% if cookiecutter.include_examples %}
# The route the proofs count: it answers the worker's pid, which shows the spread.
ROUTE = "/api/worker"
{% else %}
# The route the proofs count (this project has no /api/worker to show the spread:
# the recycling proof shows several workers by the master's children instead).
ROUTE = "/healthz"
{% endif %}
REQUESTS = 120
# At most this many batches of REQUESTS to see a second worker answer.
SPREAD_BATCHES = 10
SCRAPES = 30
# Only this address may scrape the allow-list stack; 127.0.0.2 (loopback too, so
# nothing leaves the machine) stands for everyone else.
ALLOWED = "127.0.0.1"
ELSEWHERE = "127.0.0.2"
PROMTOOL_HINT = (
    "promtool is not installed: run scripts/install-system-deps.sh test as root "
    "(Debian's prometheus package carries promtool), or put promtool on PATH."
)


@pytest.fixture(scope="module")
def recycling_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Workers recycled every few dozen requests; only 127.0.0.1 may read /metrics."""
    env = {
        "WEB_CONCURRENCY": "3",
        "GUNICORN_MAX_REQUESTS": "25",
        "GUNICORN_MAX_REQUESTS_JITTER": "5",
        "METRICS_ALLOW_FROM": ALLOWED,
    }
    with own_stack_or_skip(tmp_path_factory, "metrics-recycling", env) as started:
        yield started


def scrape(client: Client) -> str:
    resp = client.get("/metrics")
    assert resp.status_code == 200, f"/metrics -> {resp.status_code} {resp.text[:300]!r}"
    media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
    assert media_type == "text/plain", resp.headers
    return resp.text


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape: (name, its labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def requests_counted(text: str, route: str = ROUTE, status: str = "200") -> float:
    labels = frozenset({"method": "GET", "route": route, "status": status}.items())
    return samples(text).get(("http_requests_total", labels), 0.0)


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def pids_reported(text: str) -> set[int]:
    """The workers whose process metrics the scrape carries."""
    return {
        int(dict(labels)["pid"])
        for name, labels in samples(text)
        if name == "process_start_time_seconds"
    }


def live_workers(master: int) -> set[int]:
    """The gunicorn master's children right now: its live workers."""
    workers = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == master:
            workers.add(int(entry.name))
    return workers


def get_route(client: Client) -> int | None:
    """One request to ROUTE; the answering worker's pid where the route tells it."""
    resp = client.get(ROUTE)
    body = assert_json(resp, 200)
    return body.get("pid")


def send_spread(client: Client, count: int) -> set[int | None]:
    return set(run_concurrently([lambda: get_route(client)] * count, threads=8))


def send_until_spread(client: Client) -> tuple[int, set[int | None]]:
    """Batches of REQUESTS until a second worker has answered: (requests sent, pids).

    One batch of fast requests may all reach one worker: nginx reuses the
    connections it keeps open, and a gevent worker accepts without limit, so
    one worker can hold all of them. Every batch is counted, so the proof
    below is exact for however many were sent.
    """
    sent, pids = 0, set()
    for _ in range(SPREAD_BATCHES):
        pids |= send_spread(client, REQUESTS)
        sent += REQUESTS
        if len(pids) >= 2:
            break
    return sent, pids


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(0.2)


def raw_get(base_url: str, path: str, source: str, headers: dict | None = None) -> tuple:
    """GET from a chosen local source address: (status, Content-Type, body)."""
    port = int(base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=TIMEOUT, source_address=(source, 0)
    )
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def test_every_scrape_shows_exactly_the_requests_of_every_worker(client: Client) -> None:
    before = requests_counted(scrape(client))
{% if cookiecutter.include_examples %}
    sent, pids = send_until_spread(client)
    assert len(pids) >= 2, f"all {sent} requests were answered by {pids}"
{% else %}
    send_spread(client, REQUESTS)
    sent = REQUESTS
{% endif %}

    # Read one after another, and at once (sync workers then answer on several pids).
    texts = [scrape(client) for _ in range(SCRAPES)]
    texts += run_concurrently([lambda: scrape(client)] * SCRAPES, threads=6)
    seen = [requests_counted(text) for text in texts]
    assert seen == [before + sent] * len(texts), (
        f"{sent} requests after {before}: the scrapes showed {sorted(set(seen))}"
    )


def test_the_running_workers_are_counted(stack, client: Client) -> None:
    expected = stack.gunicorn_settings.workers
    text = scrape(client)
    assert value(text, "gunicorn_workers") == expected, text
    assert pids_reported(text) == live_workers(stack.pids()["gunicorn"])


def test_recycled_workers_lose_no_count_and_leave_no_gauges(recycling_stack) -> None:
    client = Client(recycling_stack.base_url)
    master = recycling_stack.pids()["gunicorn"]
    workers = recycling_stack.gunicorn_settings.workers
    first = live_workers(master)
    before = requests_counted(scrape(client))

    send_spread(client, REQUESTS * 2)

    # Every worker of the start was recycled (25-30 requests each, of 240).
    wait_until(
        lambda: len(live_workers(master)) == workers and not live_workers(master) & first,
        30,
        f"{workers} workers, none of them of the start {sorted(first)}",
    )
    for text in [scrape(client) for _ in range(SCRAPES)]:
        assert requests_counted(text) == before + REQUESTS * 2
    # Live gauges of the dead are gone: the figures are the workers running now.
    wait_until(
        lambda: value(scrape(client), "gunicorn_workers") == workers,
        15,
        f"gunicorn_workers to be {workers}",
    )
    wait_until(
        lambda: pids_reported(scrape(client)) == live_workers(master),
        15,
        "process metrics of exactly the live workers",
    )
    text = scrape(client)
    assert not pids_reported(text) & first, "a dead worker's process metrics are still there"


def test_only_the_allowed_addresses_may_scrape(recycling_stack) -> None:
    base_url = recycling_stack.base_url
    status, _, _ = raw_get(base_url, "/metrics", ALLOWED)
    assert status == 200
    # A forged X-Forwarded-For changes nothing: nginx checks the connection's address.
    for headers in ({}, {"X-Forwarded-For": ALLOWED}, {"X-Real-IP": ALLOWED}):
        status, content_type, body = raw_get(base_url, "/metrics", ELSEWHERE, headers)
        assert status == 403, (status, body[:300])
        assert content_type.split(";")[0] == "application/json", content_type
        error = json.loads(body)["error"]
        assert error["code"] == "forbidden" and error["message"], error
    # The same path spelled otherwise reaches the same location.
    for path in ("/metrics?format=text", "//metrics", "/%6detrics"):
        status, _, _ = raw_get(base_url, path, ELSEWHERE)
        assert status == 403, path


def test_unknown_routes_share_one_label(client: Client) -> None:
    before = requests_counted(scrape(client), route="unmatched", status="404")
    paths = [f"/no-such-{unique('path')}" for _ in range(5)]
    for path in paths:
        assert_error(client.get(path), 404)
    text = scrape(client)
    assert requests_counted(text, route="unmatched", status="404") == before + len(paths)
    assert not any(path in text for path in paths), "a raw path became a label value"


def test_a_method_a_route_lacks_is_counted_under_the_route(client: Client) -> None:
    """A 405, and OPTIONS' 204, answer for the route whose path matched: counted by
    its pattern, as every other answer of it is, not as an unmatched path."""

    def counted(text: str, method: str, status: str) -> float:
        labels = frozenset({"method": method, "route": "/healthz", "status": status}.items())
        return samples(text).get(("http_requests_total", labels), 0.0)

    before = scrape(client)
    assert_error(client.request("DELETE", "/healthz"), 405, "method_not_allowed")
    assert client.request("OPTIONS", "/healthz").status_code == 204
    after = scrape(client)
    assert counted(after, "DELETE", "405") == counted(before, "DELETE", "405") + 1
    assert counted(after, "OPTIONS", "204") == counted(before, "OPTIONS", "204") + 1


{% if cookiecutter.include_examples %}
def test_the_toolkit_counts_exports_tasks_and_lock_waits(client: Client) -> None:
    before = scrape(client)
    sizes = [100, 5000]
    for size in sizes:
        assert_json(client.post("/api/exports", json={"size_bytes": size, "label": "m"}), 201)
    tasks = [
        ({"task": "exit", "code": 0}, "success"),
        ({"task": "exit", "code": 3}, "failure"),
        ({"task": "sleep", "seconds": 5, "timeout": 0.2}, "timed_out"),
    ]
    for task, _ in tasks:
        assert_json(client.post("/api/tasks/run", json=task), 200)
    name = unique("metrics")
    for _ in range(3):
        assert_json(client.post(f"/api/locked-increment/{name}", json={"hold_ms": 0}), 200)

    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("app_exports_total") == len(sizes)
    assert grew("app_export_bytes_total") == sum(sizes)
    for _, outcome in tasks:
        assert grew("app_child_tasks_total", outcome=outcome) == 1, outcome
    assert grew("app_lock_wait_seconds_count") == 3


{% endif %}
def test_the_output_passes_promtool(client: Client) -> None:
    promtool = shutil.which("promtool", path=f"{os.environ.get('PATH', '')}:/usr/bin")
    if promtool is None:
        pytest.fail(PROMTOOL_HINT)
    client.get(f"/no-such-{unique('path')}")  # an unmatched route among the series
    text = scrape(client)
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"promtool check metrics:\n{done.stdout}{done.stderr}"
