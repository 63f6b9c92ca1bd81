"""Starting stacks of the suite's own, for conftest's fixtures and for test modules.

Here, not in conftest.py, so a test module can import these by a name that no
other directory's conftest shares.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

EXTERNAL_BASE_URL = os.environ.get("BASE_URL", "").strip().rstrip("/")
NEEDS_OWN_STACK = "needs a stack started by the suite (unset BASE_URL to run it)"
# "redis" or "embedded": the backend of the stacks this suite starts (see stack.Stack).
BACKEND = os.environ.get("STACK_BACKEND", "").strip() or "redis"


@contextlib.contextmanager
def running_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]
) -> Iterator[object]:
    """Start redis-server, gunicorn and nginx; stop all three whatever happens."""
    from stack import Stack

    stack = Stack(tmp_path_factory.mktemp(name), env=env)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def own_stack_or_skip(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]):
    if EXTERNAL_BASE_URL:
        pytest.skip(NEEDS_OWN_STACK)
    return running_stack(tmp_path_factory, name, env)
