"""A system check: nothing shared across requests may live in one worker's memory.

Behind gunicorn each worker is its own process. A per-process cache
(`LocMemCache`, `DummyCache`) gives every worker its own counters and
sessions, and a file-based one is neither atomic nor shared beyond one disk;
nothing fails, answers just disagree. With DEBUG off, `manage.py check` (and
`migrate`, which gunicorn's on_starting runs) refuses such a configuration.
"""

from __future__ import annotations

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


def _not_shared(alias: str) -> str | None:
    backend = settings.CACHES.get(alias, {}).get("BACKEND", "")
    return NOT_SHARED.get(backend)


@register(Tags.caches)
def check_shared_state(app_configs=None, **kwargs) -> list[Error]:
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
    return errors
