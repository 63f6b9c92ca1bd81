import os
import sys
import time

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
