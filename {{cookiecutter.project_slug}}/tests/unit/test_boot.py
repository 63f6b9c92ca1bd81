"""A broken setting stops the service at start, with one sentence, not with 500s."""

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_a_data_dir_that_is_a_file_stops_gunicorn_with_one_sentence(tmp_path):
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("a file where a directory belongs")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "REDIS_URL": "",
        "DATA_DIR": str(not_a_dir),
        "EXPORT_DIR": str(tmp_path / "exports"),
        "GUNICORN_BIND": f"unix:{tmp_path / 'g.sock'}",
        "WEB_CONCURRENCY": "2",
        "DJANGO_SECRET_KEY": "boot-test-" + "x" * 50,
    }
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # gunicorn's arbiter stops when a worker fails to boot, instead of forking more.
    assert done.returncode != 0
    sentence = f"Configuration error: DATA_DIR: {not_a_dir} must be a real directory"
    assert sentence in done.stderr, done.stderr[-3000:]
