"""This project's Django app: it registers the system checks and holds each worker's runtime.

The runtime (the toolkit's state, locks, export store, rate limit and slots) is
opened on first use in each process, from `settings.SERVICE`, and anew after a
fork: a connection made in the gunicorn master would be shared by every worker.
`ready()` opens nothing, so the master's `migrate` touches no backend; `wsgi.py`
opens it as the worker starts, so a broken setting stops the worker.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, cast

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.signals import setting_changed

from ..breaker import Breaker
from ..runtime import Runtime, open_runtime

LABEL = "django_project"


@dataclass(frozen=True)
class _Opened:
    pid: int
    runtime: Runtime
    # The Django cache's own breaker (counters.py), as the toolkit's clients have theirs.
    cache_breaker: Breaker


class DjangoProjectConfig(AppConfig):
    name = __package__
    label = LABEL

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the checks)

        self._guard = threading.Lock()
        self._opened: _Opened | None = None
        setting_changed.connect(self._setting_changed)

    def runtime(self) -> Runtime:
        """This process's runtime, opened on first use (and anew after a fork)."""
        return self._current().runtime

    def cache_breaker(self) -> Breaker:
        return self._current().cache_breaker

    def _current(self) -> _Opened:
        opened = self._opened
        if opened is not None and opened.pid == os.getpid():
            return opened
        with self._guard:
            if self._opened is None or self._opened.pid != os.getpid():
                service = open_runtime(settings.SERVICE)
                breaker = Breaker(service.settings.backend_retry_after)
                self._opened = _Opened(os.getpid(), service, breaker)
            return self._opened

    def _setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        # A test's override_settings(SERVICE=...) gets a runtime on its own settings.
        if setting == "SERVICE":
            with self._guard:
                self._opened = None


def config() -> DjangoProjectConfig:
    return cast(DjangoProjectConfig, apps.get_app_config(LABEL))


def runtime() -> Runtime:
    """The worker's runtime, for views."""
    return config().runtime()
