"""The locked increment's read-modify-write, the same for every framework."""

from __future__ import annotations

# The guarded value's key among the data each lock fences.
GUARDED_KEY = "value"


def next_value(current: bytes | str | None) -> int:
    """A deliberately non-atomic read-modify-write: only the lock makes it safe."""
    return int(current or 0) + 1
