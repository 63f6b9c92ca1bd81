import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import processes

PYTHON = [sys.executable, "-I", "-c"]


def test_exit_codes_come_back_exactly():
    for code in (0, 1, 3, 255):
        result = processes.run([*PYTHON, f"raise SystemExit({code})"], timeout=30)
        assert (result.returncode, result.timed_out, result.stdout) == (code, False, "")


def test_argv_reaches_the_child_verbatim_never_through_a_shell():
    text = "$(id); `uname` && echo 'q' | cat > /tmp/x * ~ \\ \"ü\"\nline"
    result = processes.run([*PYTHON, "import sys; print(sys.argv[1])", text], timeout=30)
    assert result.stdout == text + "\n"
    assert result.returncode == 0


def test_a_timeout_kills_the_child_and_what_it_started():
    marker = "9.8765"
    started = time.monotonic()
    script = f"import subprocess; subprocess.call(['sleep', '{marker}'])"
    result = processes.run([*PYTHON, script], timeout=0.5)
    assert result.timed_out
    assert time.monotonic() - started < 2.5
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _runs(pid, marker)]


def test_the_child_gets_no_secrets():
    assert set(processes.CHILD_ENV) == {"PATH", "LANG", "PYTHONIOENCODING"}


def _runs(pid: str, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker.encode() in f.read()
    except OSError:
        return False


# A task whose grandchild leaves the session (see the file).
ESCAPING_TASK = Path(__file__).parents[1] / "integration" / "escaping_task.py"


def escaping(child: str, grandchild: str, marker: str) -> list[str]:
    return [sys.executable, "-I", str(ESCAPING_TASK), child, grandchild, marker]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in "ZX"


def _started(result: processes.Completed) -> dict[str, int]:
    return {name: int(pid) for name, pid in (line.split() for line in result.stdout.splitlines())}


@pytest.fixture
def marker() -> Iterator[str]:
    """A sleep length in the task's command lines; whatever mentions it after is killed."""
    value = f"9.{time.monotonic_ns() % 10**6:06d}"
    yield value
    for pid in os.listdir("/proc"):
        if pid.isdigit() and _runs(pid, value):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _mentioning(marker: str) -> list[str]:
    return [pid for pid in os.listdir("/proc") if pid.isdigit() and _runs(pid, marker)]


@pytest.mark.parametrize("action", ["wait", "stop-reaper"])
def test_a_grandchild_that_left_the_session_ends_at_the_timeout(marker: str, action: str):
    started = time.monotonic()
    result = processes.run(escaping(action, "hold", marker), timeout=1)
    took = time.monotonic() - started
    assert result.timed_out and result.returncode == -signal.SIGKILL, result
    assert took < 1 + 2, f"answered after {took:.2f} s"
    assert set(_started(result)) == {"child", "grandchild"}, result
    assert not [pid for pid in _started(result).values() if _alive(pid)], result
    assert not _mentioning(marker)


@pytest.mark.parametrize("grandchild", ["hold", "detach"])
def test_what_an_ended_program_left_running_ends_with_it(marker: str, grandchild: str):
    started = time.monotonic()
    result = processes.run(escaping("exit", grandchild, marker), timeout=30)
    took = time.monotonic() - started
    assert (result.returncode, result.timed_out) == (3, False), result
    assert took < 3, f"answered after {took:.2f} s"
    assert not _alive(_started(result)["grandchild"]), f"the {grandchild} grandchild runs on"
    assert not _mentioning(marker)


def test_a_killed_reaper_still_answers_within_the_bound(marker: str):
    """The worst case: the reaper, killed, ends nothing; the worker is still free, and
    what stayed in the task's session (all but what left it) is killed."""
    started = time.monotonic()
    result = processes.run(escaping("kill-reaper", "hold", marker), timeout=1)
    took = time.monotonic() - started
    assert result.timed_out, result
    assert took < 1 + processes.END_SECONDS + 2, f"answered after {took:.2f} s"
    assert not _alive(_started(result)["child"]), result


def test_a_program_that_signals_its_own_group_reaches_only_that():
    """As with no reaper, the program leads its own group: `kill 0` stays in it. (A
    reaper in that group would end the task at once, long before the second is up.)"""
    script = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "os.killpg(0, signal.SIGTERM); time.sleep(1); print('on')"
    )
    result = processes.run([*PYTHON, script], timeout=30)
    assert (result.returncode, result.timed_out, result.stdout) == (0, False, "on\n")


@pytest.mark.parametrize(
    ("script", "returncode"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -signal.SIGTERM),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL),
        ("import sys; sys.exit(200)", 200),
    ],
)
def test_the_programs_own_end_comes_back_through_the_reaper(script: str, returncode: int):
    result = processes.run([*PYTHON, script], timeout=30)
    assert (result.returncode, result.timed_out) == (returncode, False)


def test_a_program_that_cannot_start_exits_127_as_from_a_shell():
    result = processes.run(["/nonexistent/program"], timeout=30)
    assert (result.returncode, result.timed_out, result.stdout) == (127, False, "")
