"""The local stack: redis-server, gunicorn with several workers, and nginx.

The service is only proven correct the way it really runs: several worker
processes behind nginx, sharing Redis. `Stack` starts all three on loopback,
as the current user, with every file inside one run directory, waits until
each answers, and stops them by pid so that nothing is left running.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import signal
import sys
import threading
from pathlib import Path
from types import TracebackType

from stack import procs
from stack.errors import StackError
from stack.nginx import METRICS_ALLOW_DEFAULT, NginxSite, write_config
from stack.project import (
    PROJECT_ROOT,
    STATIC_DIR,
    GunicornSettings,
    find_program,
    gunicorn_settings,
)

__all__ = ["PROJECT_ROOT", "Stack", "StackError", "render_nginx"]

# How long each server may take to answer after it was started.
REDIS_START_SECONDS = 15.0
GUNICORN_START_SECONDS = 60.0
NGINX_START_SECONDS = 15.0
# nginx's QUIT waits for the requests in flight: as long as gunicorn lets them
# run on TERM, and this much more; past that its group is killed.
NGINX_STOP_MARGIN_SECONDS = 5.0
# An nginx that never answered has nothing in flight.
NGINX_START_FAILED_STOP_SECONDS = 10.0
REDIS_STOP_SECONDS = 10.0
# Upper bound on waiting for gunicorn's graceful stop, whatever its setting.
GUNICORN_STOP_MAX_SECONDS = 35.0
# The line gunicorn.conf.py's post_worker_init logs once a worker can serve.
WORKER_READY = re.compile(r"Worker ready \(pid: (\d+)\)")
# sun_path is 108 bytes on Linux, including the terminating NUL.
UNIX_PATH_MAX = 107


class Stack:
    """redis-server + gunicorn + nginx on loopback, all files in `run_dir`.

    `env` overrides os.environ for gunicorn (and for the NGINX_* and HTTP_PORT
    settings the stack reads), e.g. {"GUNICORN_TIMEOUT": "3"}. `backend` is
    "redis" (the default, from STACK_BACKEND) or "embedded": no Redis at all,
    the workers share SQLite and lock files in `run_dir/data` instead.
    """

    def __init__(
        self, run_dir: Path | str, env: dict[str, str] | None = None, backend: str | None = None
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.overrides = dict(env or {})
        self.backend = backend or self._env().get("STACK_BACKEND", "").strip() or "redis"
        if self.backend not in {"redis", "embedded"}:
            raise StackError(f"the backend must be redis or embedded, not {self.backend!r}.")
        self.data_dir = self.run_dir / "data"
        self.metrics_dir = self.run_dir / "metrics"
        self.gunicorn_log = self.run_dir / "gunicorn.log"
        self.gunicorn_socket = self.run_dir / "gunicorn.sock"
        self.export_dir = self.run_dir / "exports"
        self.redis_dir = self.run_dir / "redis"
        self.redis_log = self.run_dir / "redis.log"
        self.nginx_dir = self.run_dir / "nginx"
        self.access_log = self.run_dir / "access.log"
        self.nginx_access_log = self.nginx_dir / "access.log"
        self.nginx_error_log = self.nginx_dir / "error.log"
        self.redis_port: int | None = None
        self.http_port: int | None = None
        self.gunicorn_settings: GunicornSettings | None = None
        self._redis: procs.Child | None = None
        self._gunicorn: procs.Child | None = None
        self._nginx: procs.Child | None = None
        self._lock = threading.RLock()
        self._atexit_registered = False

    # -- public API -------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.http_port is None:
            raise StackError("the stack has not been started, so it has no base URL yet.")
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def redis_url(self) -> str:
        if self.redis_port is None:
            raise StackError("the stack has not been started, so it has no Redis URL yet.")
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start(self) -> None:
        """Start all three and wait until each answers; StackError otherwise."""
        with self._lock:
            if self._redis or self._gunicorn or self._nginx:
                raise StackError("the stack is already running; stop() it first.")
            embedded = self.backend == "embedded"
            redis_server = None if embedded else find_program("redis-server")
            nginx = find_program("nginx")
            self._prepare_run_dir()
            self._register_atexit()
            try:
                if redis_server:
                    self._start_redis(redis_server, new_port=True)
                self._start_gunicorn()
                self._start_nginx(nginx)
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Stop nginx, gunicorn and Redis (in that order) by pid; idempotent.

        Each is stopped even if stopping the one before it failed. nginx goes
        first and drains: it stops accepting, and waits for every request in
        flight (which gunicorn is still serving) for as long as gunicorn's
        graceful stop would; then gunicorn has nothing left to finish.
        """
        with self._lock:
            nginx, self._nginx = self._nginx, None
            gunicorn, self._gunicorn = self._gunicorn, None
            drained = True
            try:
                if nginx:
                    # QUIT: finish the requests in flight, then exit.
                    drained = procs.stop(nginx, signal.SIGQUIT, self._nginx_stop_seconds())
            finally:
                try:
                    if gunicorn:
                        # TERM: gunicorn's graceful stop, bounded by its graceful_timeout.
                        # If nginx had to be killed, what still runs was cut already:
                        # QUIT stops the workers at once (the master still reaps each
                        # and kills its tasks' children in child_exit).
                        sig = signal.SIGTERM if drained else signal.SIGQUIT
                        procs.stop(gunicorn, sig, self._gunicorn_stop_seconds())
                        # A master that was killed could not remove its files; none of
                        # them is live now, and none should pass for a running server.
                        for leftover in self._gunicorn_files():
                            leftover.unlink(missing_ok=True)
                finally:
                    self.stop_redis()
                    if self._atexit_registered:
                        atexit.unregister(self.stop)
                        self._atexit_registered = False

    def stop_redis(self) -> None:
        """Stop Redis only (the "backend down" case); start_redis() brings it back."""
        with self._lock:
            redis, self._redis = self._redis, None
            if redis:
                # TERM: with `--save ""` Redis exits without writing a dump.
                procs.stop(redis, signal.SIGTERM, REDIS_STOP_SECONDS)

    def start_redis(self) -> None:
        """Start Redis again on the same port with the same data directory."""
        with self._lock:
            if self._redis:
                return
            if self.redis_port is None:
                raise StackError("start_redis() needs a Redis stack that was started before.")
            self._register_atexit()
            self._start_redis(find_program("redis-server"), new_port=False)

    def running(self) -> dict[str, bool]:
        """Which of the three servers are alive right now."""
        return {
            child_name: child is not None and child.alive()
            for child_name, child in (
                ("redis", self._redis),
                ("gunicorn", self._gunicorn),
                ("nginx", self._nginx),
            )
        }

    def pids(self) -> dict[str, int]:
        """The pid of each running server (each also leads its own process group)."""
        return {
            child.name: child.pid
            for child in (self._redis, self._gunicorn, self._nginx)
            if child is not None
        }

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the three servers ----------------------------------------------

    def _env(self) -> dict[str, str]:
        """os.environ, then the caller's overrides: what the stack itself reads."""
        return {**os.environ, **self.overrides}

    def _prepare_run_dir(self) -> None:
        for pidfile in (
            self.run_dir / "gunicorn.pid",
            self.nginx_dir / "nginx.pid",
            self.run_dir / "redis.pid",
        ):
            pid = procs.live_pid(pidfile)
            if pid is not None:
                raise StackError(
                    f"a process from an earlier stack still runs in {self.run_dir} "
                    f"(pid {pid}, from {pidfile.name}): stop it or use another run directory."
                )
        if len(os.fsencode(self.gunicorn_socket)) > UNIX_PATH_MAX:
            raise StackError(
                f"the run directory {self.run_dir} is too long for a unix socket path "
                f"(at most {UNIX_PATH_MAX} bytes): use a shorter --run-dir."
            )
        for directory in (
            self.run_dir,
            self.redis_dir,
            self.export_dir / "files",
            self.export_dir / "work",
            self.nginx_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        # Fresh logs per start, so a failure's tail is about this start.
        for stale in (
            *self._gunicorn_files(),
            self.gunicorn_log,
            self.access_log,
            self.run_dir / "gunicorn.out",
            self.redis_log,
            self.run_dir / "redis.out",
            self.nginx_error_log,
            self.nginx_access_log,
            self.nginx_dir / "nginx.out",
        ):
            stale.unlink(missing_ok=True)

    def _gunicorn_files(self) -> tuple[Path, ...]:
        """What gunicorn's master makes and removes when it stops: its socket, its
        control socket and its pid file."""
        return (self.gunicorn_socket, self.run_dir / "gunicorn.ctl", self.run_dir / "gunicorn.pid")

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True

    def _start_redis(self, program: str, *, new_port: bool) -> None:
        attempts = 3 if new_port else 1
        for attempt in range(attempts):
            if new_port:
                self.redis_port = procs.free_port()
            assert self.redis_port is not None
            argv = [
                program,
                "--port", str(self.redis_port),
                "--bind", "127.0.0.1",
                "--dir", str(self.redis_dir),
                # Locks and counters are live state, not data to restore.
                "--save", "",
                "--appendonly", "no",
                # Lock and state keys must never be evicted to make room.
                "--maxmemory-policy", "noeviction",
                "--daemonize", "no",
                "--logfile", str(self.redis_log),
                "--pidfile", str(self.run_dir / "redis.pid"),
            ]  # fmt: skip
            child = procs.spawn(
                "redis-server",
                argv,
                cwd=self.run_dir,
                env=self._env(),
                output=self.run_dir / "redis.out",
                logs=(self.redis_log,),
            )
            self._redis = child
            port = self.redis_port
            try:
                procs.wait_until(
                    lambda port=port: procs.redis_pings(port),
                    child,
                    timeout=REDIS_START_SECONDS,
                    what=f"PING on 127.0.0.1:{port}",
                )
                return
            except StackError:
                self.stop_redis()
                # Another process may have taken the port between our probe
                # and Redis's bind; a different port is worth one more try.
                in_use = "Address already in use" in procs.tail(child.logs)
                if not (in_use and attempt + 1 < attempts):
                    raise

    def _gunicorn_env(self, redis_url: str | None = None) -> dict[str, str]:
        env = self._env()
        src = PROJECT_ROOT / "src"
        if src.is_dir():
            # The package imports from a checkout without being installed.
            env["PYTHONPATH"] = os.pathsep.join(
                part for part in (str(src), env.get("PYTHONPATH", "")) if part
            )
        if not env.get("DJANGO_SECRET_KEY", "").strip():
            # A Django project refuses to start without a key; this stack makes its
            # own, shared by all its workers (they inherit gunicorn's environment).
            env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
        env.update(
            GUNICORN_BIND=f"unix:{self.gunicorn_socket}",
            REDIS_URL="" if self.backend == "embedded" else redis_url or self.redis_url,
            DATA_DIR=str(self.data_dir),
            EXPORT_DIR=str(self.export_dir),
            GUNICORN_CONTROL_SOCKET=str(self.run_dir / "gunicorn.ctl"),
            GUNICORN_ERRORLOG=str(self.gunicorn_log),
            GUNICORN_ACCESSLOG=str(self.access_log),
            GUNICORN_PIDFILE=str(self.run_dir / "gunicorn.pid"),
            # Every worker's metrics files, emptied by gunicorn's master at each start.
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
        )
        return env

    def _gunicorn_stop_seconds(self) -> float:
        graceful = self.gunicorn_settings.graceful_timeout if self.gunicorn_settings else 30
        return min(float(graceful) + 5.0, GUNICORN_STOP_MAX_SECONDS)

    def _nginx_stop_seconds(self) -> float:
        graceful = self.gunicorn_settings.graceful_timeout if self.gunicorn_settings else 30
        return min(float(graceful), GUNICORN_STOP_MAX_SECONDS) + NGINX_STOP_MARGIN_SECONDS

    def _start_gunicorn(self) -> None:
        env = self._gunicorn_env()
        self.gunicorn_settings = gunicorn_settings(env)
        child = procs.spawn(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=PROJECT_ROOT,
            env=env,
            output=self.run_dir / "gunicorn.out",
            logs=(self.gunicorn_log,),
        )
        self._gunicorn = child
        connect = procs.unix_connector(self.gunicorn_socket)
        procs.wait_until(
            lambda: procs.http_status(connect, "localhost", "/healthz") == 200,
            child,
            timeout=GUNICORN_START_SECONDS,
            what=f"GET /healthz on {self.gunicorn_socket}",
        )
        # One worker answering is not all of them: a burst sent while the others
        # still import the app lands on the first, and nginx's kept-alive upstream
        # connections stay pinned to it. Wait for every worker's "ready" line.
        workers = self.gunicorn_settings.workers
        procs.wait_until(
            lambda: len(self.ready_workers()) >= workers,
            child,
            timeout=GUNICORN_START_SECONDS,
            what=f"{workers} workers logging 'Worker ready' in {self.gunicorn_log.name}",
        )

    def ready_workers(self) -> set[int]:
        """Pids of the workers that finished loading the app (gunicorn.conf.py logs it)."""
        try:
            text = self.gunicorn_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return set()
        return {int(pid) for pid in WORKER_READY.findall(text)}

    def nginx_site(self, port: int) -> NginxSite:
        """The rendered configuration's inputs for this stack on `port`."""
        env = self._env()
        assert self.gunicorn_settings is not None
        return NginxSite(
            conf_dir=self.nginx_dir,
            listen=f"127.0.0.1:{port}",
            gunicorn_socket=self.gunicorn_socket,
            export_dir=self.export_dir,
            static_dir=STATIC_DIR,
            gunicorn=self.gunicorn_settings,
            server_names=env.get("NGINX_SERVER_NAMES", ""),
            client_max_body_size=env.get("NGINX_CLIENT_MAX_BODY_SIZE", "").strip() or "1m",
            access_log=self.nginx_access_log,
            metrics_allow_from=env.get("METRICS_ALLOW_FROM", "").strip() or METRICS_ALLOW_DEFAULT,
        )

    def _start_nginx(self, program: str) -> None:
        pinned = self._env().get("HTTP_PORT", "").strip()
        if pinned and not (pinned.isdigit() and 0 < int(pinned) < 65536):
            raise StackError(f"HTTP_PORT must be a port number, not {pinned!r}.")
        attempts = 1 if pinned else 3
        for attempt in range(attempts):
            port = int(pinned) if pinned else procs.free_port()
            site = self.nginx_site(port)
            conf = write_config(site)
            child = procs.spawn(
                "nginx",
                [program, "-p", str(self.nginx_dir), "-c", str(conf), "-e", str(site.error_log)],
                cwd=self.nginx_dir,
                env=self._env(),
                output=self.nginx_dir / "nginx.out",
                logs=(site.error_log,),
            )
            self._nginx = child
            self.http_port = port
            connect = procs.tcp_connector(port)
            try:
                procs.wait_until(
                    lambda connect=connect, port=port: (
                        procs.http_status(connect, f"127.0.0.1:{port}", "/healthz") == 200
                    ),
                    child,
                    timeout=NGINX_START_SECONDS,
                    what=f"GET http://127.0.0.1:{port}/healthz",
                )
                return
            except StackError:
                procs.stop(child, signal.SIGQUIT, NGINX_START_FAILED_STOP_SECONDS)
                self._nginx = None
                self.http_port = None
                in_use = "Address already in use" in procs.tail(child.logs)
                if not (in_use and attempt + 1 < attempts):
                    raise


def render_nginx(target: Path | str, env: dict[str, str] | None = None) -> Path:
    """Render the stack's nginx configuration into `target` with placeholder values.

    Paths point into `target` and the port is HTTP_PORT or 8080, so
    `nginx -t -p DIR -c DIR/nginx.conf -e DIR/error.log` can check it.
    """
    stack = Stack(target, env)
    stack.nginx_dir = stack.run_dir
    stack.nginx_access_log = stack.run_dir / "access.log"
    stack.gunicorn_settings = gunicorn_settings(
        stack._gunicorn_env(redis_url="redis://127.0.0.1:6379/0")
    )
    pinned = stack._env().get("HTTP_PORT", "").strip()
    return write_config(stack.nginx_site(int(pinned) if pinned.isdigit() else 8080))
