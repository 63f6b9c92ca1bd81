"""The WSGI application gunicorn loads in each worker (gunicorn.conf.py names it).

`runtime.boot()` opens the toolkit's state, locks and export store in this
worker, after the fork, and stops the worker with one sentence on a broken
setting; Django's own settings are checked the same way.

Every request is counted by the same WSGI middleware as Flask's (`metrics`),
around Django's whole handler, so requests Django refuses before any view
(a disallowed Host, a 404) count too. Not django-prometheus: its counters are
labelled by view name, not by route pattern as every adapter here labels
them, and its migration gauges have no multiprocess mode (each worker's,
dead ones included, would stay a series of its own); its /metrics view would
be a second exposition beside `health.scrape`.
"""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from .. import metrics, routes, runtime

os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{__package__}.settings")

runtime.boot()
try:
    django_application = get_wsgi_application()
except ImproperlyConfigured as exc:
    print(f"Configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(runtime.WORKER_BOOT_ERROR) from None
application = metrics.InstrumentedWSGI(django_application, [r.path for r in routes.ROUTES])
