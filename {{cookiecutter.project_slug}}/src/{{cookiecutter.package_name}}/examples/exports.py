"""What an example export holds and how it is shown, the same for every framework."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

CHUNK = 1 << 20
_PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyz\n"
_FILLER = (_PATTERN * (CHUNK // len(_PATTERN) + 1))[:CHUNK]


def create_args(body: dict[str, Any]) -> dict[str, Any]:
    """The arguments of `ExportStore.create` for a validated request, its content included."""
    label, size = body["label"], int(body["size_bytes"])
    return {
        "chunks": content(label, size),
        "size": size,
        "filename": f"{label}.txt",
        "content_type": "text/plain; charset=utf-8",
        "label": label,
    }


def content(label: str, size: int) -> Iterator[bytes]:
    """The line `label=<label>`, then filler, `size` bytes in all (a prefix if smaller)."""
    header = f"label={label}\n".encode()[:size]
    yield header
    left = size - len(header)
    while left > 0:
        chunk = _FILLER[: min(left, CHUNK)]
        yield chunk
        left -= len(chunk)


def public(meta: dict[str, Any]) -> dict[str, object]:
    """What a client is shown of an export."""
    return {
        "id": meta["id"],
        "label": meta["label"],
        "size": meta["size"],
        "sha256": meta["sha256"],
        "download_url": f"/api/exports/{meta['id']}/download",
    }


def attachment(meta: dict[str, Any]) -> str:
    """The Content-Disposition of a download. Names come from validated labels
    (A-Z a-z 0-9 _ . -): nothing to escape."""
    return f'attachment; filename="{meta["filename"]}"'
