"""Files made per request, written privately and published atomically.

Two workers writing one fixed path corrupt each other without an error. Here
each export is written in a fresh directory of its own under `work/`, then
the whole directory is renamed into `files/<id>/` in one atomic step, so a
reader sees a complete export or none, and the working area is emptied
whether the request succeeded or failed. nginx serves the published files
(X-Accel-Redirect), so no worker is held by a slow download.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from .errors import InsufficientStorage, NotFound

# The internal nginx location that serves <root>/files/ (deploy/nginx/app.conf.template
# has `location ^~ /_internal/exports/ { alias .../files/; }`; a unit test holds them equal).
ACCEL_PREFIX = "/_internal/exports/"
FILES_DIR = "files"
WORK_DIR = "work"
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
DATA_NAME = "data"
META_NAME = "meta.json"
# Exports are published readable by the web server, which may be another user.
DIR_MODE = 0o755
FILE_MODE = 0o644
# A work directory this old belongs to a worker that was killed mid-export.
STALE_WORK_SECONDS = 3600.0
# Keep this much disk free so one large export cannot starve everything else.
DISK_RESERVE_BYTES = 64 << 20
# Sweep for expired exports at most this often per process.
SWEEP_EVERY_SECONDS = 60.0


class ExportStore:
    def __init__(self, root: Path, max_age: float) -> None:
        self.files = root / FILES_DIR
        self.work = root / WORK_DIR
        self.max_age = max_age
        self._next_sweep = 0.0

    def _ensure_dirs(self) -> None:
        for path in (self.files, self.work):
            path.mkdir(parents=True, exist_ok=True)

    def create(
        self,
        chunks: Iterable[bytes],
        *,
        size: int,
        filename: str,
        content_type: str = "application/octet-stream",
        **extra: object,
    ) -> dict:
        """Write `chunks` (`size` bytes in all) as a new export; return its metadata."""
        self._ensure_dirs()
        if shutil.disk_usage(self.work).free - size < DISK_RESERVE_BYTES:
            raise InsufficientStorage(size)
        self.maybe_sweep()
        export_id = secrets.token_hex(16)
        workdir = Path(tempfile.mkdtemp(prefix="export-", dir=self.work))
        try:
            written, digest = self._write(workdir / DATA_NAME, chunks)
            meta = {
                **extra,
                "id": export_id,
                "size": written,
                "sha256": digest,
                "filename": filename,
                "content_type": content_type,
                "created": time.time(),
            }
            (workdir / META_NAME).write_text(json.dumps(meta))
            os.chmod(workdir / META_NAME, FILE_MODE)
            os.chmod(workdir, DIR_MODE)
            # The publish: one rename of the whole directory, atomic on one filesystem.
            os.rename(workdir, self.files / export_id)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return meta

    @staticmethod
    def _write(path: Path, chunks: Iterable[bytes]) -> tuple[int, str]:
        digest = hashlib.sha256()
        written = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        return written, digest.hexdigest()

    def get(self, export_id: str) -> dict:
        if not ID_PATTERN.fullmatch(export_id):
            raise NotFound("export")
        try:
            return json.loads((self.files / export_id / META_NAME).read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise NotFound("export") from None

    def accel_path(self, meta: dict) -> str:
        """The internal URI nginx serves; built from server-side data only."""
        return f"{ACCEL_PREFIX}{meta['id']}/{DATA_NAME}"

    def data_path(self, meta: dict) -> Path:
        return self.files / meta["id"] / DATA_NAME

    def maybe_sweep(self) -> None:
        """Sweep at most once a minute per process: cheap enough to run on create."""
        now = time.time()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_SECONDS
            self.sweep(now)

    def sweep(self, now: float) -> None:
        """Remove expired exports and work directories abandoned by killed workers."""
        for parent, age in ((self.files, self.max_age), (self.work, STALE_WORK_SECONDS)):
            try:
                entries = list(os.scandir(parent))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    expired = now - entry.stat(follow_symlinks=False).st_mtime > age
                except FileNotFoundError:
                    continue
                if expired:
                    shutil.rmtree(entry.path, ignore_errors=True)
