import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def resolved(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")}
    clean.pop("WEB_CONCURRENCY", None)
    out = subprocess.run(
        [sys.executable, str(CONFIG)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_defaults_are_the_generated_worker_class():
    settings = resolved()
{% if cookiecutter.__worker_class == "aiohttp" %}
    assert settings["worker_class_name"] == "aiohttp.GunicornWebWorker"
    runs_as = "{{ cookiecutter.package_name }}.aiohttp_worker.BacklogWebWorker"
    assert settings["worker_class"] == runs_as
    # aiohttp's worker writes the access log itself, in its own syntax; gunicorn's
    # %(x)s syntax would stop it at boot.
    assert "%(" not in settings["access_log_format"]
    assert "%{X-Request-ID}i" in settings["access_log_format"]
{% else %}
    assert settings["worker_class_name"] == "{{ cookiecutter.__worker_class }}"
{% endif %}
    assert settings["workers"] >= 2
    assert settings["preload_app"] is False
    assert settings["max_requests"] > 0 and settings["max_requests_jitter"] > 0


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
def test_tuned_per_worker_class(worker_class):
    settings = resolved(GUNICORN_WORKER_CLASS=worker_class)
    assert settings["worker_class_name"] == worker_class
{% if cookiecutter.framework == "aiohttp" %}
    runs_as = {}
{% else %}
    # gthread runs as the worker that accepts only with a free thread.
    runs_as = {"gthread": "{{ cookiecutter.package_name }}.gthread_worker.FreeThreadWorker"}
{% endif %}
    assert settings["worker_class"] == runs_as.get(worker_class, worker_class)
    assert (settings["threads"] > 1) == (worker_class == "gthread")
    if worker_class in ("gthread", "gevent"):
        # Fewer than nginx may open at once leaves new connections waiting in the
        # listen backlog (a gthread worker stops accepting without a free thread).
        assert settings["worker_connections"] >= 1000
    if worker_class == "sync":
        assert settings["workers"] == 2 * settings["cpus"] + 1
        # A sync worker is silent for a whole request: the longest task (60 s) must fit.
        assert settings["timeout"] > 60


@pytest.mark.parametrize(
    ("worker_class", "concurrency"),
    [("sync", "1"), ("gthread", "6"), ("gevent", "700"), ("aiohttp.GunicornWebWorker", "0")],
)
def test_workers_are_told_how_many_requests_they_serve_at_once(worker_class, concurrency):
    # What each worker sizes its Redis connection pool from (config.py); gunicorn
    # sets raw_env in the environment the workers inherit.
    settings = resolved(
        GUNICORN_WORKER_CLASS=worker_class,
        GUNICORN_THREADS="6",
        GUNICORN_WORKER_CONNECTIONS="700",
    )
    assert settings["worker_concurrency"] == int(concurrency)
    assert f"APP_WORKER_CONCURRENCY={concurrency}" in settings["raw_env"]


def test_workers_follow_the_cpus_this_process_may_use():
    one_cpu = resolved()
    assert one_cpu["cpus"] <= len(os.sched_getaffinity(0))
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, str(CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    if pinned.returncode == 0:
        assert json.loads(pinned.stdout)["cpus"] == 1


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
@pytest.mark.parametrize("workers", ["2", "3", "5", "17"])
def test_the_long_work_cap_leaves_room_for_short_requests(worker_class, workers):
    settings = resolved(GUNICORN_WORKER_CLASS=worker_class, WEB_CONCURRENCY=workers)
    cap = settings["long_work_cap"]
    # Requests served at once: a sync worker one, a gthread worker one per thread.
    serving = settings["workers"] * (settings["threads"] if worker_class == "gthread" else 1)
    assert 1 <= cap <= 4 * settings["cpus"], settings
    if worker_class != "gevent":
        assert cap < serving, f"{cap} tasks would hold all {serving} of {worker_class}"
    # Every worker inherits it.
    assert f"LONG_WORK_CAP={cap}" in settings["raw_env"]


def test_long_work_cap_overrides_the_default():
    assert resolved(LONG_WORK_CAP="7")["long_work_cap"] == 7
    assert "LONG_WORK_CAP=7" in resolved(LONG_WORK_CAP="7")["raw_env"]


def test_web_concurrency_overrides_but_never_below_two():
    assert resolved(WEB_CONCURRENCY="5")["workers"] == 5
    assert resolved(WEB_CONCURRENCY="1")["workers"] == 2


def test_control_socket_is_per_service_or_off():
    assert resolved()["control_socket_disable"] is True
    own = resolved(GUNICORN_CONTROL_SOCKET="/run/app/gunicorn.ctl")
    assert own["control_socket"] == "/run/app/gunicorn.ctl"
    assert own["control_socket_disable"] is False


def test_unix_socket_is_closed_to_other_users():
    # gunicorn's default umask, 0, creates its unix socket 0777.
    assert resolved()["umask"] & 0o007 == 0o007


# Each worker class by the name of the class gunicorn instantiates.
WORKER_CLASS_NAMES = [
    "SyncWorker",
    "ThreadWorker",
    "FreeThreadWorker",
    "GeventWorker",
    "GunicornWebWorker",
]
_POST_WORKER_INIT = """
import importlib.util, logging, signal, sys

spec = importlib.util.spec_from_file_location("gunicorn_conf", sys.argv[1])
conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conf)
# What gunicorn <= 23's arbiter left in every worker: a handler that reaps any child.
signal.signal(signal.SIGCHLD, lambda signum, frame: None)


class Log:
    error_log = logging.getLogger("error")

    def info(self, *args):
        pass


worker = type(sys.argv[2], (), {"pid": 1, "log": Log()})()
conf.post_worker_init(worker)
print(signal.getsignal(signal.SIGCHLD) is signal.SIG_DFL)
"""


@pytest.mark.parametrize("class_name", WORKER_CLASS_NAMES)
def test_post_worker_init_restores_sigchld_in_every_worker_class(class_name):
    # In a process of its own: the hook changes signals, the environment and logging.
    out = subprocess.run(
        [sys.executable, "-c", _POST_WORKER_INIT, str(CONFIG), class_name],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "True", out.stdout + out.stderr


_MASTER_HOOKS = """
import importlib.util, json, os, sys

import gunicorn.config  # what gunicorn's master has loaded before it runs any hook

before_hooks = sorted(m for m in ("prometheus_client", "ssl") if m in sys.modules)
spec = importlib.util.spec_from_file_location("gunicorn_conf", sys.argv[1])
conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conf)
directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]


class Log:
    def warning(self, *args):
        pass


server = type("Arbiter", (), {"log": Log()})()
conf.on_starting(server)
emptied = sorted(os.listdir(directory))
for name in ("counter_41.db", "gauge_livesum_41.db", "gauge_livesum_42.db"):
    open(os.path.join(directory, name), "w").close()
conf.child_exit(server, type("Worker", (), {"pid": 41})())
after_exit = sorted(os.listdir(directory))
conf.on_exit(server)
print(json.dumps({
    "emptied": emptied,
    "after_exit": after_exit,
    "before_hooks": before_hooks,
}))
"""


def test_the_masters_hooks_keep_the_metrics_directory(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_7.db").touch()
    (directory / "notes.txt").touch()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": "",
        "DJANGO_SECRET_KEY": "hooks-test-" + "k" * 50,
    }
    out = subprocess.run(
        [sys.executable, "-c", _MASTER_HOOKS, str(CONFIG)],
        capture_output=True,
        text=True,
        env=env,
        cwd=CONFIG.parent,
        check=True,
        timeout=120,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # A previous run's values are gone before any worker forks; other files stay.
    assert seen["emptied"] == ["notes.txt"]
    # A dead worker's live gauge goes, its counts stay; another worker's gauge stays.
    assert seen["after_exit"] == ["counter_41.db", "gauge_livesum_42.db", "notes.txt"]
    # child_exit imports prometheus_client, which imports ssl, into the master, whose
    # modules every later worker inherits before gevent patches it: harmless only while
    # gunicorn's master has loaded ssl itself already.
    assert seen["before_hooks"] == ["ssl"], seen
{% if cookiecutter.framework == "django" %}


_FAILED_START = """
import importlib.util, sys

spec = importlib.util.spec_from_file_location("gunicorn_conf", sys.argv[1])
conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conf)
try:
    conf.on_starting(type("Arbiter", (), {})())
except RuntimeError as exc:
    print(exc)
else:
    sys.exit("on_starting did not refuse to start")
"""


def test_a_start_stopped_by_failed_migrations_leaves_no_directory_behind(tmp_path):
    # gunicorn runs no on_exit when on_starting raises: whatever it made would stay.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(scratch),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        # Nothing listens on port 1: migrate fails to connect.
        "DATABASE_URL": "postgres://user:pw@127.0.0.1:1/none",
        "DJANGO_SECRET_KEY": "hooks-test-" + "k" * 50,
    }
    env.pop("APP_CHILDREN_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", _FAILED_START, str(CONFIG)],
        capture_output=True,
        text=True,
        env=env,
        cwd=CONFIG.parent,
        check=True,
        timeout=120,
    )
    assert "Database migrations failed" in out.stdout, out.stdout + out.stderr
    assert list(scratch.iterdir()) == []
{% endif %}
