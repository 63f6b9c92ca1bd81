"""The WSGI application gunicorn loads in each worker (gunicorn.conf.py names it).

The worker's runtime (state, locks, export store) is opened here, after the
fork, so a broken setting or data directory stops the worker with one sentence
instead of answering 500s; Django's own settings are checked the same way.

Every request is counted by the same WSGI middleware as Flask's (`metrics`),
around Django's whole handler, labelled by the URLconf's route patterns, so
requests Django refuses before any view (a disallowed Host, a 404) count too.
Not django-prometheus: its counters are labelled by view name, not by route
pattern as the other frameworks label them, and its migration gauges have no
multiprocess mode (each worker's, dead ones included, would stay a series of
its own); its /metrics view would be a second exposition beside `views.scrape`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application
from django.urls import URLResolver, get_resolver

from .. import metrics
from ..runtime import WORKER_BOOT_ERROR, config_errors_stop_the_worker
from .apps import runtime

os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{__package__}.settings")


def route_patterns(patterns: Sequence[Any], prefix: str = "") -> Iterator[str]:
    """Every route of the URLconf, as the `route` label spells it ("/api/counters/{name}")."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from route_patterns(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield metrics.route_label(prefix + str(pattern.pattern))


try:
    django_application = get_wsgi_application()
except ImproperlyConfigured as exc:
    print(f"Configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(WORKER_BOOT_ERROR) from None

with config_errors_stop_the_worker():
    runtime()
application = metrics.InstrumentedWSGI(
    django_application, route_patterns(get_resolver().url_patterns)
)
