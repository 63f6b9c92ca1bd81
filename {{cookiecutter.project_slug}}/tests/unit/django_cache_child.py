"""Child process for test_django_cache.py: Django's own cache tests, or counters through a cull.

Django's settings are configured once per process and each run needs its own,
so the tests start this file as `python django_cache_child.py MODE ...` and
read the one JSON line it prints last on stdout. Progress goes to stderr.

    suite TESTS_ROOT LOCATION BACKEND NOT_APPLICABLE_JSON
        Django's `BaseCacheTests` (TESTS_ROOT/cache/tests.py, from Django's
        source distribution) on BACKEND, every alias in LOCATION; the tests named
        in NOT_APPLICABLE_JSON ({name: reason}) are skipped with their reason.
    counters (with the example endpoints)
        The project's real settings (from the environment): counters through
        the HTTP views, then the default cache filled well past MAX_ENTRIES and
        cleared; the counters are read back.
"""

from __future__ import annotations

import json
import sys
import unittest
from typing import Any

import django
from django.conf import settings


class Outcomes(unittest.TextTestResult):
    """unittest's result, also keeping the names of the tests that passed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passed: list[str] = []

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self.passed.append(test._testMethodName)


def suite(tests_root: str, location: str, backend: str, not_applicable: dict[str, str]) -> dict:
    sys.path.insert(0, tests_root)
    settings.configure(
        # Some of the tests cache model instances: Django's test app and its Poll model.
        INSTALLED_APPS=["cache"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
    )
    django.setup()
    from cache.tests import BaseCacheTests, caches_setting_for_tests
    from django.test import TestCase, override_settings
    from django.test.runner import DiscoverRunner

    # As Django's own suite runs each backend: its aliases (default, prefix, v2,
    # custom_key, cull, zero_cull...) all on the backend, in one location.
    @override_settings(CACHES=caches_setting_for_tests(BACKEND=backend, LOCATION=location))
    class Tests(BaseCacheTests, TestCase):
        pass

    for name, reason in not_applicable.items():
        setattr(Tests, name, unittest.skip(reason)(getattr(Tests, name)))

    runner = DiscoverRunner(verbosity=0, interactive=False)
    runner.setup_test_environment()
    databases = runner.setup_databases()
    try:
        tests = unittest.defaultTestLoader.loadTestsFromTestCase(Tests)
        text_runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=Outcomes)
        outcome = text_runner.run(tests)
    finally:
        runner.teardown_databases(databases)
        runner.teardown_test_environment()
    assert isinstance(outcome, Outcomes)
    return {
        "passed": outcome.passed,
        "failed": {test._testMethodName: text for test, text in outcome.failures + outcome.errors},
        "skipped": {test._testMethodName: reason for test, reason in outcome.skipped},
    }
{% if cookiecutter.include_examples %}


def counters() -> dict:
    django.setup()
    from django.core.cache import caches
    from django.test import Client

    client = Client()

    def incr(name: str, key: str | None = None) -> int:
        headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
        path = f"/api/counters/{name}/incr"
        answer = client.post(path, content_type="application/json", **headers)
        assert answer.status_code == 200, answer.content
        return int(answer.json()["value"])

    def read(name: str) -> int:
        answer = client.get(f"/api/counters/{name}")
        assert answer.status_code == 200, answer.content
        return int(answer.json()["value"])

    counted = [incr("kept") for _ in range(3)] + [incr("kept", key="once-1")]
    cache = caches["default"]
    # Three times what the default cache may hold, none of it ever expiring.
    fillers = [f"filler-{i}" for i in range(3 * cache._max_entries)]
    for key in fillers:
        cache.set(key, key, timeout=None)
    kept = sum(cache.has_key(key) for key in fillers)
    after_fill = read("kept")
    retried = incr("kept", key="once-1")
    cache.clear()
    return {
        "max_entries": cache._max_entries,
        "fillers": len(fillers),
        "fillers_kept": kept,
        "counted": counted,
        "after_fill": after_fill,
        "retried": retried,
        "after_clear": read("kept"),
    }
{% endif %}


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "suite":
        tests_root, location, backend, not_applicable = args
        report = suite(tests_root, location, backend, json.loads(not_applicable))
{% if cookiecutter.include_examples %}
    elif mode == "counters":
        report = counters()
{% endif %}
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(report))
