"""The one directory where every worker writes its metrics, kept by the gunicorn master.

prometheus_client's multiprocess mode has each worker write its values to
files of its own in PROMETHEUS_MULTIPROC_DIR, and `/metrics` add them all up
(`metrics.py`). That holds only if the directory starts empty at every start
of the service (a previous run's files would be counted again), before any
worker forks, and if a dead worker's live gauges go with it while its
counters stay (a recycled worker's requests still happened). The master does
both, from `gunicorn.conf.py`'s `on_starting` and `child_exit` (the latter with
prometheus_client's own `multiprocess.mark_process_dead`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

# prometheus_client's own variable: it decides at import whether values go to files.
DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client's files: <kind>_<pid>.db or gauge_<mode>_<pid>.db.
_VALUE_FILE = "*.db"
_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")
# Memory-backed, so a value written under load costs no disk I/O; else the temp dir.
_SHM = "/dev/shm"  # noqa: S108 (a private directory is made inside it)

# The directory this master made itself (none was configured); removed at its exit.
_made: Path | None = None


class MetricsDirError(RuntimeError):
    """The configured directory cannot be used; the message names it."""


def prepare() -> Path:
    """In the master, before any worker forks: the directory, made if needed and emptied.

    PROMETHEUS_MULTIPROC_DIR names it (one per service: another service's files
    would be emptied and counted); unset, a private one is made and removed at
    exit. Only prometheus_client's value files are removed from a configured one.
    The variable is set to the absolute path, which every worker inherits.
    """
    global _made
    configured = os.environ.get(DIR_VARIABLE, "").strip()
    if configured:
        path = Path(configured).resolve()
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            for stale in path.glob(_VALUE_FILE):
                stale.unlink(missing_ok=True)
        except OSError as exc:
            raise MetricsDirError(
                f"{DIR_VARIABLE}={configured} cannot be used for the workers' metrics "
                f"({exc.strerror or exc}): name a directory this user can write."
            ) from None
    else:
        parent = _SHM if os.access(_SHM, os.W_OK) else None
        path = Path(tempfile.mkdtemp(prefix="metrics-", dir=parent))  # mode 0700
        _made = path
    os.environ[DIR_VARIABLE] = str(path)
    return path


def live_pids(directory: str | Path) -> list[int]:
    """The pids that own live gauge files: the workers running now, in pid order."""
    found = set()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            matched = _LIVE_FILE.fullmatch(entry.name)
            if matched:
                found.add(int(matched.group(1)))
    return sorted(found)


def remove() -> None:
    """At the master's exit: the directory, if this master made it."""
    global _made
    made, _made = _made, None
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
