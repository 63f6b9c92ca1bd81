"""The WSGI application gunicorn loads in each worker (gunicorn.conf.py names it).

`runtime.boot()` opens the toolkit's state, locks and export store in this
worker, after the fork, and stops the worker with one sentence on a broken
setting; Django's own settings are checked the same way.
"""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from .. import runtime

os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{__package__}.settings")

runtime.boot()
try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    print(f"Configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(runtime.WORKER_BOOT_ERROR) from None
