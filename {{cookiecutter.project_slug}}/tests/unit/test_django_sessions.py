"""Sessions through the ORM on the SQLite database, written by several processes at once.

Django's SQLite settings (WAL, IMMEDIATE transactions, a busy timeout) are
what keep "database is locked" away when every gunicorn worker writes.
"""

import multiprocessing
import os

import django
import pytest

SETTINGS = "{{ cookiecutter.package_name }}.django_project.settings"
PROCESSES = 4
SESSIONS_EACH = 40


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("django-data")
    saved = {name: os.environ.get(name) for name in ("DATA_DIR", "DJANGO_SECRET_KEY")}
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SECRET_KEY", "unit-test-key-" + "s3ss10ns" * 6)
    for name in ("REDIS_URL", "DATABASE_URL"):
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    django.setup()
    from django.core.management import call_command
    from django.db import connections

    # As gunicorn's on_starting does: the tables exist (and WAL is on) before the fork.
    call_command("migrate", "--noinput", verbosity=0)
    connections.close_all()
    yield data_dir
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _write_sessions(start, failures):
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import OperationalError, connections

    connections.close_all()  # never use the parent's connection after a fork
    start.wait()
    for i in range(SESSIONS_EACH):
        try:
            session = SessionStore()
            session["worker"] = os.getpid()
            session["n"] = i
            session.save()
            session["n"] = i + 1
            session.save()
        except OperationalError as exc:
            failures.put(str(exc))
    connections.close_all()


def test_sessions_from_several_processes_never_hit_a_locked_database(migrated):
    from django.contrib.sessions.models import Session

    context = multiprocessing.get_context("fork")
    start = context.Event()
    failures = context.Queue()
    procs = [
        context.Process(target=_write_sessions, args=(start, failures)) for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    assert errors == [], f"{len(errors)} writes failed, e.g. {errors[:3]}"
    assert Session.objects.count() == PROCESSES * SESSIONS_EACH
