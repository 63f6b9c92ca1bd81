"""Gunicorn settings, all from the environment, each with its reason.

Run `python gunicorn.conf.py` to print the resolved settings as JSON: that is
exactly what gunicorn will run with, and what the tests check.
"""

import json
import logging
import math
import os
import signal

{% if cookiecutter.__worker_class == "aiohttp" %}
_DEFAULT_WORKER_CLASS = "aiohttp.GunicornWebWorker"
{% else %}
_DEFAULT_WORKER_CLASS = "{{ cookiecutter.__worker_class }}"
{% endif %}
{% if cookiecutter.framework == "django" %}
_DEFAULT_APP = "{{ cookiecutter.package_name }}.django_project.wsgi:application"
{% elif cookiecutter.framework == "aiohttp" %}
# An async factory: aiohttp's worker awaits it inside each worker's own event loop.
_DEFAULT_APP = "{{ cookiecutter.package_name }}.aiohttp_app:create_app"
{% else %}
# A factory: gunicorn calls it in each worker, after the fork.
_DEFAULT_APP = "{{ cookiecutter.package_name }}.flask_app:create_app()"
{% endif %}
# nginx waits this much longer than gunicorn lets a worker run, so gunicorn's own
# limit (and its log line) comes first.
_NGINX_READ_MARGIN_SECONDS = 30
# Child tasks at once per usable CPU, at most, by default: each is an interpreter of
# its own, memory included, and more than a few per CPU only share them.
_LONG_WORK_PER_CPU = 4


def _env(name, default):
    return os.environ.get(name, "").strip() or default


def _env_int(name, default):
    raw = _env(name, "")
    return int(raw) if raw else default


def usable_cpus():
    """CPUs this process may really use: its affinity, capped by a cgroup quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus or 1)


def default_workers(worker_class, cpus):
    # sync serves one request per process; threaded and green workers need fewer.
    if worker_class == "sync":
        return 2 * cpus + 1
    return cpus + 1


def default_long_work_cap(worker_class, workers, threads, connections, cpus):
    # A child task holds what serves its request as long as it runs: a sync worker,
    # a gthread thread, a gevent or aiohttp connection. A quarter of those (at least
    # one) stay free for short requests. Each child is a whole interpreter competing
    # for the CPUs, so never more than _LONG_WORK_PER_CPU per CPU: the bound that
    # counts under gevent and aiohttp, which serve a thousand connections a worker.
    per_worker = {"sync": 1, "gthread": threads}.get(worker_class, connections)
    serving = workers * per_worker
    return max(1, min(serving - max(1, serving // 4), _LONG_WORK_PER_CPU * cpus))


wsgi_app = _env("APP_MODULE", _DEFAULT_APP)
bind = [_env("GUNICORN_BIND", "127.0.0.1:8000")]
# A unix socket is created srwxrwx---: only this user and its group may connect
# (where nginx runs as another user, that user joins the group). gunicorn's default,
# 0, made it 0777, and any local user could hold every sync worker with slow headers.
# gunicorn applies it only while binding a unix socket and creating its heartbeat
# files (0600 whatever the umask); files the application writes keep the process's.
umask = 0o007
# nginx refuses what is too large first (its 8 KiB header buffers answer 414 and 431
# in JSON): gunicorn's own limits sit at their maximums so they never come first.
limit_request_line = 8190
limit_request_fields = 32768
limit_request_field_size = 8190
# The class by its gunicorn name (sync, gthread, gevent); the settings below follow it.
worker_class_name = _env("GUNICORN_WORKER_CLASS", _DEFAULT_WORKER_CLASS)
{% if cookiecutter.framework != "aiohttp" %}
# gthread runs as gunicorn's own worker that accepts only with a free thread
# (gthread_worker.py says why): what gunicorn is given to load.
_RUN_AS = {"gthread": "{{ cookiecutter.package_name }}.gthread_worker.FreeThreadWorker"}
worker_class = _RUN_AS.get(worker_class_name, worker_class_name)
{% else %}
# aiohttp's worker, keeping gunicorn's listen backlog (aiohttp_worker.py says why).
_RUN_AS = {
    "aiohttp.GunicornWebWorker": "{{ cookiecutter.package_name }}.aiohttp_worker.BacklogWebWorker",
}
worker_class = _RUN_AS.get(worker_class_name, worker_class_name)
{% endif %}
cpus = usable_cpus()
# GUNICORN_WORKERS, or the conventional WEB_CONCURRENCY; never fewer than 2 workers.
# compose passes GUNICORN_WORKERS: gunicorn itself does int(WEB_CONCURRENCY) before
# it reads this file, so an empty WEB_CONCURRENCY would kill it at import.
_requested_workers = _env_int("GUNICORN_WORKERS", 0) or _env_int("WEB_CONCURRENCY", 0)
workers = max(2, _requested_workers or default_workers(worker_class_name, cpus))
# gthread: requests per worker at once; other classes ignore it.
threads = _env_int("GUNICORN_THREADS", 4) if worker_class_name == "gthread" else 1
# Connections a gevent or gthread worker holds open at once, idle kept-alive ones
# included. Never fewer than nginx may open: a worker at its limit stops accepting,
# nginx's kept-alive connections are not closed under load, and a new one waits in
# the listen backlog. A gthread worker with no free thread stops accepting anyway
# (gthread_worker.py).
worker_connections = _env_int("GUNICORN_WORKER_CONNECTIONS", 1000)
# Requests one worker serves at once, which its Redis connection pool is sized from
# (config.py); 0 where the class sets no bound (aiohttp's accepts every connection).
worker_concurrency = {"sync": 1, "gthread": threads, "gevent": worker_connections}.get(
    worker_class_name, 0
)
# Child tasks at once on this host, across its workers (capacity.py): past it, 503
# busy at once. LONG_WORK_CAP, or derived from the workers (default_long_work_cap).
long_work_cap = _env_int("LONG_WORK_CAP", 0) or default_long_work_cap(
    worker_class_name, workers, threads, worker_connections, cpus
)
# gunicorn sets these in its environment before it forks the workers, and puts its
# own environment back before a HUP reload reads this file again, so they follow a
# changed worker count: the application reads its share from there.
raw_env = [f"LONG_WORK_CAP={long_work_cap}", f"APP_WORKER_CONCURRENCY={worker_concurrency}"]
# A worker silent this long is killed; nginx's proxy_read_timeout is set above it.
# A sync worker is silent for a whole request, so its default must outlast the
# longest one the service allows (a 60 s task); other classes beat in between.
timeout = _env_int("GUNICORN_TIMEOUT", 90 if worker_class_name == "sync" else 30)
# Derived for nginx, not a gunicorn setting: the one place this rule lives.
nginx_read_timeout = timeout + _NGINX_READ_MARGIN_SECONDS
# On TERM, requests get this long to finish; compose's stop_grace_period exceeds it.
# aiohttp's worker gives its server 95 % of it as the shutdown timeout.
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 25)
# nginx opens a connection per request (stack/nginx.py says why) and keeps none
# idle; this serves a direct client's next request (`make run`), briefly.
keepalive = _env_int("GUNICORN_KEEPALIVE", 2)
# Recycle workers now and then, at staggered moments, to bound slow leaks. Each new
# worker imports the whole app, a cost taken from the requests, so rarely enough
# that make bench sees no cost (the README's Performance section has the figures);
# preload_app (a fork instead of an import) is unsafe with gevent.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 20000)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 2000)
# The heartbeat file on a disk-backed /tmp can stall workers; /dev/shm is memory.
_SHM = "/dev/shm"  # noqa: S108 (memory-backed, only for the heartbeat file)
worker_tmp_dir = _SHM if os.access(_SHM, os.W_OK) else None
# Gunicorn 27 opens a control socket at one per-user path by default, which a
# second service of the same user silently takes over: one per service, or none.
control_socket = _env("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket
# Trust X-Forwarded-* only from the proxy in front (unix sockets are always trusted).
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# The one scheme header nginx sets (gunicorn's default also trusts X-Forwarded-Ssl
# and X-Forwarded-Protocol, and refuses a request where they disagree).
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
# gevent patches the standard library per worker: importing the app in the master
# first would load ssl and redis unpatched.
preload_app = False
pidfile = _env("GUNICORN_PIDFILE", "") or None
accesslog = _env("GUNICORN_ACCESSLOG", "-")
errorlog = _env("GUNICORN_ERRORLOG", "-")
loglevel = _env("GUNICORN_LOGLEVEL", "info")
{% if cookiecutter.framework == "aiohttp" %}
# The request id nginx sets, and the duration in microseconds, in aiohttp's own
# syntax: its worker writes the access log itself and refuses gunicorn's %(x)s one.
access_log_format = '%a "%r" %s %b %Dus rid=%{X-Request-ID}i'
{% else %}
# The request id nginx sets, and the duration in milliseconds.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}i)s'
{% endif %}


# The worker class that really runs, by the name it is configured with: a
# configured string proves nothing, the instance's class does.
_CLASS_NAMES = {
    "SyncWorker": "sync",
    "ThreadWorker": "gthread",
    "FreeThreadWorker": "gthread",
    "GeventWorker": "gevent",
    "GunicornWebWorker": "aiohttp",
    "BacklogWebWorker": "aiohttp",
}


def on_starting(server):
    from {{ cookiecutter.package_name }} import children, metrics_files

{% if cookiecutter.framework == "django" %}
    # First: a start that fails here must leave nothing behind (gunicorn runs no
    # on_exit then), and migrate's own metrics files (its checks import the app)
    # are emptied below with the rest.
    _migrate()
{% endif %}
    # Where every worker writes its metrics (prometheus_client's multiprocess mode),
    # emptied here, once per start, before any worker forks: a previous run's files
    # would be counted again. A HUP reload keeps it, and so keeps the counts.
    metrics_files.prepare()
    # Where workers note their tasks, so the master can end what a dead worker
    # left (child_exit below). Made once, last: nothing after it can fail
    # the start and leave it behind. A HUP reload keeps it.
    children.make_dir()


def post_fork(server, worker):
    # In the worker, first: it quits when its master dies, rather than serving on
    # with no one to bound it (and so do its tasks, in worker_int below).
    from {{ cookiecutter.package_name }} import children

    children.quit_with_master(worker.ppid)


def worker_int(worker):
    # INT or QUIT, gunicorn's quick stop: the worker's tasks end now, not at their
    # timeouts (a gthread worker would wait for its threads' tasks to finish).
    from {{ cookiecutter.package_name }} import children

    children.end_tasks(worker.pid)


def worker_exit(server, worker):
    # In the worker, on any way out that runs Python (a gevent worker leaving its
    # requests' greenlets behind, a task's `finally` never run): its tasks end with it.
    from {{ cookiecutter.package_name }} import children

    children.end_tasks(worker.pid)


def child_exit(server, worker):
    # Runs in the master once a worker is gone, however it died (SIGKILL at the end
    # of the graceful timeout included): its tasks must not outlive it.
    from {{ cookiecutter.package_name }} import children

    ended = children.end_tasks(worker.pid)
    if ended:
        server.log.warning("Ended %s task(s) left by worker %s", ended, worker.pid)
    # Its live gauges go (it is no longer running); its counters stay in the totals.
    # prometheus_client loads ssl, which gunicorn's master has loaded already: a
    # gevent worker forked later inherits nothing it would not have anyway.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    from {{ cookiecutter.package_name }} import children, metrics_files

    children.remove_dir()
    metrics_files.remove()


{% if cookiecutter.framework == "django" %}
_DJANGO_SETTINGS = "{{ cookiecutter.package_name }}.django_project.settings"
# Migrations taking longer than this fail the start rather than hang it.
_MIGRATE_TIMEOUT_SECONDS = 600


def _migrate():
    # Every worker shares one database, so its tables must exist before the first
    # fork, created once by the master (workers migrating at once would race).
    # `python -m django` needs no manage.py, which the container image does not carry.
    import subprocess
    import sys

    argv = [sys.executable, "-m", "django", "migrate", "--noinput"]
    env = {"DJANGO_SETTINGS_MODULE": _DJANGO_SETTINGS, **os.environ}
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=_MIGRATE_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"Database migrations took over {_MIGRATE_TIMEOUT_SECONDS} s; not starting."
        ) from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        # A broken setting (the traceback's last line) reads as a worker would say it.
        setting_error = "django.core.exceptions.ImproperlyConfigured: "
        if reason.startswith(setting_error):
            raise RuntimeError(f"Configuration error: {reason.removeprefix(setting_error)}")
        # gunicorn prints a RuntimeError as one "Error: ..." line and exits 1.
        raise RuntimeError(f"Database migrations failed, so no worker was started: {reason}")


{% endif %}
def post_worker_init(worker):
    # The inherited SIGCHLD handler may reap our children first, and subprocess then
    # reports 0: restore the default in every worker, whatever its class or version.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    running = type(worker).__name__
    os.environ["APP_WORKER_CLASS"] = _CLASS_NAMES.get(running, running)
    # The service's own log lines (a backend outage's cause, an unhandled error) go to
    # gunicorn's error log, in its format, not as bare lines on stderr.
    app_log = logging.getLogger("{{ cookiecutter.package_name }}")
    app_log.handlers = list(worker.log.error_log.handlers)
    app_log.propagate = False
{% if cookiecutter.framework != "aiohttp" %}
    _answer_own_errors_in_json()
{% endif %}
    # Counted among the running workers (gunicorn_workers) from now on: the gauge's
    # file is this worker's, so it is set here, in the worker.
    from {{ cookiecutter.package_name }} import metrics

    metrics.worker_started()
    # Tools (the local stack among them) wait for one such line per worker.
    worker.log.info("Worker ready (pid: %s)", worker.pid)


{% if cookiecutter.framework != "aiohttp" %}
def _answer_own_errors_in_json():
    # gunicorn refuses some requests itself, before the application sees them (a
    # control character in a header value, which nginx lets through), with an HTML
    # page that nginx passes on. It has no setting for that page, so its one writer
    # (gunicorn.util.write_error, looked up at each call) is replaced by one that
    # answers in the service's JSON error shape, echoing nothing of the request.
    from gunicorn import util

    from {{ cookiecutter.package_name }}.http_errors import STATUS_CODES, error_body

    def write_error(sock, status_int, reason, mesg):
        code = STATUS_CODES.get(status_int, "bad_request" if status_int < 500 else "internal_error")
        message = f"The server refused the request before reading it ({reason})."
        body = json.dumps(error_body(code, message)).encode()
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        util.write_nonblock(sock, head.encode("latin-1") + body)

    util.write_error = write_error


{% endif %}
def resolved():
    names = [
        "wsgi_app", "bind", "umask", "limit_request_line", "limit_request_fields",
        "limit_request_field_size", "worker_class_name", "worker_class", "cpus", "workers",
        "threads", "worker_connections", "worker_concurrency", "long_work_cap", "raw_env",
        "timeout", "graceful_timeout", "keepalive", "max_requests", "max_requests_jitter",
        "worker_tmp_dir", "control_socket", "control_socket_disable", "forwarded_allow_ips",
        "preload_app", "pidfile", "accesslog", "errorlog", "loglevel", "access_log_format",
        "nginx_read_timeout",
    ]  # fmt: skip
    return {name: globals()[name] for name in names}


if __name__ == "__main__":
    print(json.dumps(resolved(), indent=2))
