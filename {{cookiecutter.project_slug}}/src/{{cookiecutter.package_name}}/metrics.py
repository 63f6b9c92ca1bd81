"""Metrics that add up across every gunicorn worker, in the Prometheus text format.

prometheus_client keeps a value in the process that changed it, so `/metrics`
answered by one of five workers would show a fifth of the traffic, a
different fifth at every scrape, and a recycled worker would take its counts
with it. Here every metric is kept in prometheus_client's multiprocess mode:
each worker writes its values to files in one directory (`metrics_files`, which
the gunicorn master empties at start and cleans when a worker dies), and
`exposition()` adds up all of them, so whichever worker answers, the figures
are the whole service's. Framework-free: the adapters call `observe_request`
(or mount `InstrumentedWSGI`) and answer `exposition()` at `/metrics`.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as _values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from . import metrics_files

# The text format generate_latest writes (Prometheus exposition format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The `route` of a request that matched no route: one value, so a client sending
# random paths cannot grow the label set. A pattern always starts with "/".
UNMATCHED = "unmatched"
# Methods kept as they are in the `method` label; anything else (nginx passes any
# token) is counted as "other", for the same reason.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"

# Whether values live in files, as prometheus_client decided when it was imported
# (PROMETHEUS_MULTIPROC_DIR set then: always, under gunicorn.conf.py). Without it
# (tests in one process) this process's own values are the whole service's.
MULTIPROCESS = bool(getattr(_values.ValueClass, "_multiprocess", False))
if MULTIPROCESS:
    # gunicorn's master makes it before any worker starts; a process of another kind
    # (a manage.py command, a one-off container) may come first, and prometheus_client
    # fails on a directory that does not exist.
    os.makedirs(os.environ[metrics_files.DIR_VARIABLE], mode=0o700, exist_ok=True)

# This module's metrics only. In multiprocess mode nothing reads it: a scrape reads
# the files. prometheus_client's default registry also holds its process and GC
# collectors, which report the answering worker alone.
_REGISTRY = CollectorRegistry()

# Web requests take milliseconds; exports, locked increments and tasks take up to
# a minute (a task's timeout is at most 60 s), and the slowest buckets show them.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A free lock is taken in a round trip; a busy one waits up to LOCK_WAIT_SECONDS (10).
LOCK_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route pattern and status.",
    ["method", "route", "status"],
    registry=_REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from a request reaching the application to its answer, by method and route.",
    ["method", "route"],
    buckets=REQUEST_BUCKETS,
    registry=_REGISTRY,
)
LOCK_WAIT_SECONDS = Histogram(
    "app_lock_wait_seconds",
    "Time spent acquiring a cross-process lock, acquired or timed out.",
    buckets=LOCK_WAIT_BUCKETS,
    registry=_REGISTRY,
)
LOCK_TIMEOUTS = Counter(
    "app_lock_timeouts_total",
    "Lock acquisitions that gave up after the lock-wait limit (409 lock_timeout).",
    registry=_REGISTRY,
)
BACKEND_UNAVAILABLE = Counter(
    "app_backend_unavailable_total",
    "Requests answered 503 backend_unavailable, by the kind of failure.",
    ["reason"],
    registry=_REGISTRY,
)
EXPORTS = Counter("app_exports_total", "Exports written and published.", registry=_REGISTRY)
EXPORT_BYTES = Counter(
    "app_export_bytes_total", "Bytes of the exports written and published.", registry=_REGISTRY
)
CHILD_TASKS = Counter(
    "app_child_tasks_total",
    "Child processes run, by outcome: success (exit 0), failure (another exit "
    "status), signal (killed by one) or timed_out.",
    ["outcome"],
    registry=_REGISTRY,
)
# livesum: each worker sets 1 while it runs, the scrape adds up the live workers'
# files, and the master removes a dead worker's (metrics_files.mark_dead), so the
# figure is the workers running now. "all" would keep every dead worker's 1.
WORKERS = Gauge(
    "gunicorn_workers",
    "gunicorn worker processes running now.",
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)


# -- What the toolkit and the adapters record ---------------------------------


def worker_started() -> None:
    """Count this process among the running workers (gunicorn.conf.py, in each worker)."""
    WORKERS.set(1)


# Each (method, route, status)'s two series, found once per process: `labels()`
# checks and joins its arguments at every call, a third of a request's metrics
# cost. Bounded as the labels are: METHODS, the route patterns, the statuses.
_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in METHODS else OTHER_METHOD
    key = (method, route, status)
    found = _series.get(key)
    if found is None:
        found = _series[key] = (
            REQUESTS.labels(method, route, str(status)),
            REQUEST_SECONDS.labels(method, route),
        )
    count, duration = found
    count.inc()
    duration.observe(seconds)


def lock_waited(seconds: float, *, timed_out: bool = False) -> None:
    LOCK_WAIT_SECONDS.observe(seconds)
    if timed_out:
        LOCK_TIMEOUTS.inc()


def backend_unavailable(reason: str) -> None:
    # `reason` is an error's class name (BackendUnavailable.reason): a short, fixed set.
    BACKEND_UNAVAILABLE.labels(reason).inc()


def export_written(size: int) -> None:
    EXPORTS.inc()
    EXPORT_BYTES.inc(size)


def child_task(returncode: int, timed_out: bool) -> None:
    if timed_out:
        outcome = "timed_out"
    elif returncode == 0:
        outcome = "success"
    elif returncode < 0:
        outcome = "signal"
    else:
        outcome = "failure"
    CHILD_TASKS.labels(outcome).inc()


# -- Route labels ---------------------------------------------------------------

_PARAM = re.compile(r"\{\w+\}")


def _segments(pattern: str) -> str:
    """A route pattern as a regex: the fixed parts literal, each `{param}` one segment."""
    return "[^/]+".join(re.escape(part) for part in _PARAM.split(pattern))


_ROUTER_PARAM = re.compile(r"[<{](?:\w+:)?(\w+)[>}]")


def route_label(rule: str) -> str:
    """A router's pattern as the `route` label spells it: Flask's and Django's
    `<name>` or `<str:name>`, and aiohttp's `{name}`, all become `{name}`."""
    return "/" + _ROUTER_PARAM.sub(r"{\1}", rule).lstrip("/")


class RouteLabels:
    """The `route` label of a path: the pattern of the route it matches, or UNMATCHED.

    The same rule for every framework: a pattern's `{param}` is one path
    segment (no "/"), as every adapter routes it. Patterns without parameters
    are tried first, so a fixed path wins over a pattern that also matches it.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        ordered = sorted(set(patterns), key=lambda pattern: "{" in pattern)
        self._patterns = ordered
        alternatives = (
            f"(?P<r{index}>{_segments(pattern)})" for index, pattern in enumerate(ordered)
        )
        self._regex = re.compile("|".join(alternatives) or "(?!)")

    def __call__(self, path: str) -> str:
        matched = self._regex.fullmatch(path)
        if matched is None or matched.lastgroup is None:
            return UNMATCHED
        return self._patterns[int(matched.lastgroup[1:])]


class InstrumentedWSGI:
    """WSGI middleware that counts and times every request (Flask and Django).

    Recorded before the answer goes back to gunicorn, so a client that has its
    answer finds it counted at its next scrape.
    """

    def __init__(self, app: Callable, patterns: Iterable[str]) -> None:
        self.app = app
        self.route_of = RouteLabels(patterns)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        # gunicorn answers 500 if the application raises before it starts a response.
        status = 500

        def start(status_line: str, headers: list, exc_info=None):
            nonlocal status
            status = int(status_line[:3])
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            observe_request(
                environ.get("REQUEST_METHOD", ""),
                self.route_of(environ.get("PATH_INFO", "")),
                status,
                time.perf_counter() - started,
            )


# -- The workers' process metrics -----------------------------------------------


class WorkerProcesses:
    """CPU, memory, open files and start time of each worker, labelled by `pid`.

    prometheus_client's own process collector reports only the process that
    answers the scrape, and multiprocess mode cannot add such collectors up.
    So the answering worker reads /proc for every live worker (all run on this
    host, as this user) at scrape time: each series is one worker's, `sum()`
    over `pid` is the service's, and a dead worker has no series at all.
    """

    def __init__(self, pids: Callable[[], Iterable[int]], proc: str = "/proc") -> None:
        self._pids = pids
        self._proc = proc

    def _boot_time(self) -> float:
        with open(os.path.join(self._proc, "stat"), "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
        raise OSError("no btime in /proc/stat")

    def collect(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            "process_cpu_seconds_total", "CPU time of each worker, user and system.", labels=["pid"]
        )
        rss = GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of each worker.", labels=["pid"]
        )
        fds = GaugeMetricFamily(
            "process_open_fds", "Open file descriptors of each worker.", labels=["pid"]
        )
        start = GaugeMetricFamily(
            "process_start_time_seconds",
            "Start time of each worker, in seconds since the Unix epoch.",
            labels=["pid"],
        )
        try:
            boot = self._boot_time()
        except OSError:  # no /proc: nothing to report
            return
        ticks = os.sysconf("SC_CLK_TCK")
        page = os.sysconf("SC_PAGE_SIZE")
        for pid in self._pids():
            base = os.path.join(self._proc, str(pid))
            try:
                with open(os.path.join(base, "stat"), "rb") as f:
                    # Fields after the command name, which is in parentheses.
                    fields = f.read().rsplit(b")", 1)[1].split()
                open_fds = len(os.listdir(os.path.join(base, "fd")))
            except (OSError, IndexError):  # gone since it was listed
                continue
            label = [str(pid)]
            cpu.add_metric(label, (int(fields[11]) + int(fields[12])) / ticks)
            rss.add_metric(label, int(fields[21]) * page)
            fds.add_metric(label, open_fds)
            start.add_metric(label, boot + int(fields[19]) / ticks)
        yield from (cpu, rss, fds, start)


# -- The answer to a scrape -----------------------------------------------------


# The used-bytes header at the start of every prometheus_client value file.
_HEADER_BYTES = 8


class SettledFiles(MultiProcessCollector):
    """prometheus_client's collector, minus the files a worker is creating right now.

    A new worker's value file exists at 0 bytes until prometheus_client sizes it,
    and a scrape that reads it then fails whole (struct.error: a 500 for every
    worker's metrics). It is still so in prometheus_client 0.26.0 (issue 1199, open;
    PR 1207 not merged). A file without its 8-byte header has nothing recorded yet,
    so leaving it out loses no value; a file never shrinks once sized.
    """

    def collect(self) -> Iterable[Metric]:
        files = []
        for entry in os.scandir(self._path):
            with contextlib.suppress(FileNotFoundError):
                if entry.name.endswith(".db") and entry.stat().st_size >= _HEADER_BYTES:
                    files.append(entry.path)
        return self.merge(files, accumulate=True)


def _this_process() -> list[int]:
    return [os.getpid()]


def registry() -> CollectorRegistry:
    """What a scrape reads: every worker's files (multiprocess mode), or this process."""
    if not MULTIPROCESS:
        scraped = CollectorRegistry()
        scraped.register(_Own())
        scraped.register(WorkerProcesses(_this_process))
        return scraped
    directory = os.environ[metrics_files.DIR_VARIABLE]
    scraped = CollectorRegistry()
    # A fresh registry per scrape, as prometheus_client's docs say: the metrics
    # above must not be registered in it, or they would be counted twice.
    SettledFiles(scraped, path=directory)
    scraped.register(WorkerProcesses(lambda: metrics_files.live_pids(directory)))
    return scraped


class _Own:
    """This module's metrics as one collector (single-process mode only)."""

    def collect(self) -> Iterator[Metric]:
        return _REGISTRY.collect()


def exposition() -> tuple[bytes, str]:
    """The whole service's metrics in the Prometheus text format, and their Content-Type."""
    return generate_latest(registry()), CONTENT_TYPE
