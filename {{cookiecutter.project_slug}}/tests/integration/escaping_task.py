"""A task whose grandchild leaves its session: what `processes.run` must still end.

Run as `python -I escaping_task.py CHILD GRANDCHILD SECONDS`, never through a
shell (by escaping_app.py, and by the unit tests of both `processes` twins).
The grandchild calls setsid(), so no kill of the task's process group reaches
it, prints its pid, and sleeps SECONDS, holding the task's stdout open
(GRANDCHILD=hold) or closing it as a daemon does (detach). Once it has left,
the child prints its pid and exits 3 at once (CHILD=exit), or sleeps SECONDS
too (wait: the task runs into its timeout), having first stopped or killed its
parent if that is a task's reaper (stop-reaper, kill-reaper: the unit tests'
worst cases; any other parent, a test's own process among them, is left alone).
SECONDS is in every command line, so a test finds them all in /proc.
"""

import os
import signal
import sys
import time

TO_REAPER = {"stop-reaper": signal.SIGSTOP, "kill-reaper": signal.SIGKILL}


def main(argv: list[str]) -> int:
    child, grandchild, seconds = argv[1:4]
    left, has_left = os.pipe()
    if os.fork() == 0:
        os.setsid()
        print(f"grandchild {os.getpid()}", flush=True)
        if grandchild == "detach":
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.write(has_left, b"x")
        time.sleep(float(seconds))
        os._exit(0)
    os.read(left, 1)
    print(f"child {os.getpid()}", flush=True)
    if child == "exit":
        return 3
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        under_reaper = b"reaper.py" in f.read()
    if child in TO_REAPER and under_reaper:
        os.kill(os.getppid(), TO_REAPER[child])
    time.sleep(float(seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
