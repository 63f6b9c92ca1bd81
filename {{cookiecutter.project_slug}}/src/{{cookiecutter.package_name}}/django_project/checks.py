"""System checks: nothing shared across requests may live in one worker's memory,
and nothing kept as state may live where a cache drops entries.

Behind gunicorn each worker is its own process. A per-process cache
(`LocMemCache`, `DummyCache`) gives every worker its own counters and
sessions, and a file-based one is neither atomic nor shared beyond one disk;
nothing fails, answers just disagree. A bounded cache drops entries to make
room (Django's MAX_ENTRIES and CULL_FREQUENCY), so the counters live in the
state cache (settings.STATE_CACHE_ALIAS), whose backend never does; setting
those bounds on a backend that never culls is refused too, as it would be
silently ignored. With DEBUG off, `manage.py check` (and `migrate`, which
gunicorn's on_starting runs) refuses such a configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import Error, Tags, register

# Cache backends that are private to one process, or files on one disk.
NOT_SHARED = {
    "django.core.cache.backends.locmem.LocMemCache": "keeps one copy per process",
    "django.core.cache.backends.dummy.DummyCache": "keeps nothing at all",
    "django.core.cache.backends.filebased.FileBasedCache": (
        "is files whose incr is not atomic across processes"
    ),
}
# Session engines that keep sessions in a cache alias.
CACHE_SESSION_ENGINES = {
    "django.contrib.sessions.backends.cache",
    "django.contrib.sessions.backends.cached_db",
}
FILE_SESSION_ENGINE = "django.contrib.sessions.backends.file"
# Shared backends that never drop an entry to make room, each with why Django's
# bounds are refused there rather than ignored, and what to do instead.
NEVER_CULLED = {
    f"{__package__}.cache.SQLiteStateCache": (
        "it keeps state (the counters), which a cull would silently lose; bound the "
        "default cache (SQLiteCache) instead and keep there what may be dropped"
    ),
    f"{__package__}.cache.SharedRedisCache": (
        "django-redis never culls, Redis's maxmemory is the bound, and a full Redis "
        "refuses writes (noeviction) rather than drop state; size maxmemory instead"
    ),
}
BOUNDS = ("MAX_ENTRIES", "CULL_FREQUENCY")


def _not_shared(alias: str) -> str | None:
    backend = settings.CACHES.get(alias, {}).get("BACKEND", "")
    return NOT_SHARED.get(backend)


@register(Tags.caches)
def check_shared_state(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[Error]:
    if settings.DEBUG:
        return []
    errors = []
    reason = _not_shared("default")
    if reason:
        errors.append(
            Error(
                f"The default cache ({settings.CACHES['default']['BACKEND']}) {reason}: "
                "gunicorn's workers would not share it; use Redis (set REDIS_URL) "
                "or the project's SQLiteCache.",
                id="django_project.E001",
            )
        )
    engine = settings.SESSION_ENGINE
    if engine == FILE_SESSION_ENGINE:
        errors.append(
            Error(
                "Sessions are stored in files on one disk, by default a temporary "
                "directory: use the database engine (django.contrib.sessions.backends.db).",
                id="django_project.E002",
            )
        )
    elif engine in CACHE_SESSION_ENGINES:
        alias = settings.SESSION_CACHE_ALIAS
        reason = _not_shared(alias)
        if reason:
            errors.append(
                Error(
                    f"Sessions are stored in the cache {alias!r}, which {reason}: "
                    "gunicorn's workers would not share them; use the database engine "
                    "or a shared cache.",
                    id="django_project.E002",
                )
            )
    alias = settings.STATE_CACHE_ALIAS
    backend = settings.CACHES.get(alias, {}).get("BACKEND")
    if backend not in NEVER_CULLED:
        errors.append(
            Error(
                f"The state cache {alias!r} ({backend or 'not configured'}) is not one that "
                "every worker shares and that never drops an entry to make room: the "
                "counters kept there would be lost; use the project's SQLiteStateCache, "
                "or SharedRedisCache with REDIS_URL.",
                id="django_project.E004",
            )
        )
    return errors


@register(Tags.caches)
def check_cache_bounds(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[Error]:
    errors = []
    for alias, options in settings.CACHES.items():
        reason = NEVER_CULLED.get(options.get("BACKEND", ""))
        bounds = [name for name in BOUNDS if name in options.get("OPTIONS", {})]
        if reason and bounds:
            errors.append(
                Error(
                    f"The cache {alias!r} ({options['BACKEND']}) would ignore "
                    f"{' and '.join(bounds)}: {reason}.",
                    id="django_project.E003",
                )
            )
    return errors
