import os
import time

import pytest

from {{ cookiecutter.package_name }} import processes


def run(request):
    argv, timeout = processes.task_argv(request)
    return processes.run(request["task"], argv, timeout)


@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_exit_codes_come_back_exactly(code):
    result = run({"task": "exit", "code": code})
    assert (result.returncode, result.timed_out, result.stdout) == (code, False, "")


def test_text_reaches_the_child_verbatim_never_through_a_shell():
    text = "$(id); `uname` && echo 'q' | cat > /tmp/x * ~ \\ \"ü\"\nline"
    result = run({"task": "echo", "text": text})
    assert result.stdout == text + "\n"
    assert result.returncode == 0


def test_a_nul_character_is_refused():
    with pytest.raises(processes.ApiError):
        processes.task_argv({"task": "echo", "text": "a\0b"})


def test_a_timeout_kills_the_child_and_what_it_started():
    marker = "9.8765"
    started = time.monotonic()
    result = run({"task": "sleep", "seconds": float(marker), "timeout": 0.5})
    assert result.timed_out
    assert time.monotonic() - started < 2.5
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _runs(pid, marker)]


def test_the_child_gets_no_secrets():
    assert "REDIS_URL" not in processes.CHILD_ENV


def _runs(pid: str, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker.encode() in f.read()
    except OSError:
        return False
