"""Django settings, all from the environment, each with its reason.

The service's own settings (REDIS_URL, DATA_DIR, KEY_PREFIX, timeouts) are read
by `config.load()`, the same function the toolkit uses, so Django's cache and
the toolkit's state always talk to the same backend. Everything Django holds
across requests (cache, sessions, database) is shared by every worker: a
per-process store would give each worker its own truth (see checks.py).
"""

from __future__ import annotations

import os

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import config, embedded


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in config.env_str(name, default).split(",") if item.strip()]


try:
    SERVICE = config.load()
    # SQLite creates its file, not the directory: private, as the embedded store's.
    DATA_DIR = embedded.private_dir(SERVICE.data_dir)
except config.ConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None

# Off unless asked for: DEBUG pages leak settings and tracebacks.
DEBUG = _env_bool("DJANGO_DEBUG", False)

# Signs sessions and CSRF tokens; every worker and host must share the same one.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: give it a long random value (see .env.example)."
        )
    # Only with DJANGO_DEBUG on: a fixed key, so all workers agree during development.
    SECRET_KEY = "django-insecure-development-only-never-deploy-this-key"  # noqa: S105

# nginx passes the client's Host (with its port); Django compares the name without it.
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")

# Only what the service uses: sessions (and the content types they need) and this
# project's app, which registers the shared-cache system check and holds each
# worker's runtime (apps.py).
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    f"{__package__}.apps.DjangoProjectConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Checks Host against ALLOWED_HOSTS on every request (400 JSON otherwise); without
    # it only code that asks for the host does. APPEND_SLASH is off, so no redirects.
    "django.middleware.common.CommonMiddleware",
    # The API views are csrf_exempt (no cookies are involved); views added later are not.
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Toolkit errors, too-large bodies and 405s from the views in the service's JSON
    # shape, from http_errors' table; Django's own refusals go to urls.py's handlers.
    f"{__package__}.middleware.JsonErrors",
]

ROOT_URLCONF = f"{__package__}.urls"
WSGI_APPLICATION = f"{__package__}.wsgi.application"

# "/api/counters/x/" is not "/api/counters/x": no redirect to another URL, a 404.
APPEND_SLASH = False

# The same limit as nginx's client_max_body_size (1m); larger bodies get 413 JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1 << 20

# SQLite in DATA_DIR by default, set up for several writing processes (Django's
# docs against "database is locked"): WAL, IMMEDIATE transactions that take the
# write lock up front, and a busy timeout. DATABASE_URL switches to PostgreSQL.
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
# 0 closes the connection after each request: under gevent every greenlet is a
# "thread" with its own connection, so persistent ones pile up. sync/gthread
# deployments on PostgreSQL may raise it.
CONN_MAX_AGE = config.env_int("DJANGO_CONN_MAX_AGE", 0)
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=CONN_MAX_AGE > 0
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "django.sqlite3"),
            "CONN_MAX_AGE": CONN_MAX_AGE,
            "OPTIONS": {
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                    f"PRAGMA busy_timeout={embedded.BUSY_TIMEOUT_MS}"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": embedded.BUSY_TIMEOUT_MS / 1000,
            },
        }
    }

# Both caches are one store for every worker: Redis when REDIS_URL is set (django-redis:
# atomic incr, one pool per process), otherwise SQLite in DATA_DIR on this host (cache.py
# says why our own). "default" holds copies, which it may drop to stay within Django's
# MAX_ENTRIES and CULL_FREQUENCY on SQLite; STATE_CACHE_ALIAS holds what must last (the
# example counters), which no cull and no clear() of the default cache touches (checks.py
# refuses a state cache that could drop entries).
STATE_CACHE_ALIAS = "state"
if SERVICE.redis_url:
    _REDIS_CACHE = {
        "BACKEND": f"{__package__}.cache.SharedRedisCache",
        "LOCATION": SERVICE.redis_url,
        "OPTIONS": {
            # A paused or unreachable Redis must turn into a 503, not a hung worker.
            "SOCKET_CONNECT_TIMEOUT": SERVICE.redis_timeout,
            "SOCKET_TIMEOUT": SERVICE.redis_timeout,
            # No automatic retries: re-sending INCRBY after a timeout could count
            # twice. Never IGNORE_EXCEPTIONS: an outage would read as wrong answers.
            "CONNECTION_POOL_KWARGS": {"retry": Retry(NoBackoff(), 0)},
        },
    }
    CACHES = {
        "default": {**_REDIS_CACHE, "KEY_PREFIX": SERVICE.key_prefix},
        # A prefix of its own: the default cache's clear() deletes only its own keys.
        STATE_CACHE_ALIAS: {**_REDIS_CACHE, "KEY_PREFIX": f"{SERVICE.key_prefix}:state"},
    }
else:
    CACHES = {
        "default": {
            "BACKEND": f"{__package__}.cache.SQLiteCache",
            "LOCATION": str(DATA_DIR),
            "KEY_PREFIX": SERVICE.key_prefix,
        },
        STATE_CACHE_ALIAS: {
            "BACKEND": f"{__package__}.cache.SQLiteStateCache",
            "LOCATION": str(DATA_DIR),
            "KEY_PREFIX": SERVICE.key_prefix,
        },
    }

# Sessions where every worker, on every host, finds them: with Redis, in the shared
# cache (noeviction, so a session is never dropped to make room; each web container
# of a compose stack has its own SQLite file, so the database would not do); on one
# host, in the database its workers share.
SESSION_ENGINE = (
    "django.contrib.sessions.backends.cache"
    if SERVICE.redis_url
    else "django.contrib.sessions.backends.db"
)

# nginx overwrites X-Forwarded-Proto with the scheme it was reached by
# (deploy/nginx/app.conf.template), so a client cannot forge https.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Cookies that carry a session or a CSRF token never travel over plain HTTP.
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SILENCED_SYSTEM_CHECKS = [
    # HSTS and the redirect to https belong to the TLS edge in front of nginx;
    # nginx and gunicorn speak plain HTTP on loopback or the compose network, and
    # a redirect here would also send health checks to https.
    "security.W004",
    "security.W008",
]

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
# Nothing here uses translations; skipping the machinery saves work per request.
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Errors (with their tracebacks) to stderr, where gunicorn's and the container's
# logs collect them; Django would otherwise try to mail them to ADMINS.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {
        # Every 404 is a WARNING there; only failures are worth a line.
        "django.request": {"level": "ERROR"},
    },
}
