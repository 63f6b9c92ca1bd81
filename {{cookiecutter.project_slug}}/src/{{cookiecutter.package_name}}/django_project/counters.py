"""The example counters, through Django's cache, as a Django project would write them.

In a Django project shared counters go through `django.core.cache`; the
settings make it a store every worker shares (django-redis, whose incr is one
Lua step, or cache.SQLiteCache). `add` then `incr` are each atomic, so
concurrent increments through any number of workers add up exactly. These
handlers replace the shared `incr_counter` and `get_counter` in the routes
the Django adapter mounts.
"""

from __future__ import annotations

from django.core.cache import cache
from django_redis.exceptions import ConnectionInterrupted

from ..embedded import SQLITE_UNAVAILABLE
from ..errors import unavailable_when
from ..examples import schemas
from ..replies import Call, Reply, json_reply
from ..schemas import check_name, parse_json, validate
from ..state import REDIS_UNAVAILABLE

# What the cache raises when its store does not answer. django-redis re-raises the
# redis-py error behind ConnectionInterrupted (unless IGNORE_EXCEPTIONS, never set).
CACHE_UNAVAILABLE = (ConnectionInterrupted, *REDIS_UNAVAILABLE, *SQLITE_UNAVAILABLE)


def _key(name: str) -> str:
    return f"counter:{name}"


def incr_counter(call: Call) -> Reply:
    name = check_name(call.params["name"])
    body = validate(parse_json(call.body, empty_ok=True), schemas.INCREMENT)
    with unavailable_when(*CACHE_UNAVAILABLE):
        # No timeout: a counter is state, not a cached copy of something.
        cache.add(_key(name), 0, timeout=None)
        value = cache.incr(_key(name), int(body.get("by", 1)))
    return json_reply(200, {"name": name, "value": value})


def get_counter(call: Call) -> Reply:
    name = check_name(call.params["name"])
    with unavailable_when(*CACHE_UNAVAILABLE):
        value = cache.get(_key(name), 0)
    return json_reply(200, {"name": name, "value": int(value)})


# Route name -> the handler that serves it in a Django project.
HANDLERS = {"incr_counter": incr_counter, "get_counter": get_counter}
