"""The programs behind the named tasks, run as `python -I childtasks.py TASK ARG`.

They run in a child process, never through a shell: the argument arrives in
argv exactly as the request sent it.
"""

import subprocess
import sys


def main(argv: list[str]) -> int:
    task, arg = argv[1], argv[2]
    if task == "exit":
        return int(arg)
    if task == "echo":
        sys.stdout.write(arg + "\n")
        return 0
    if task == "sleep":
        # A grandchild, so a timeout has to kill the whole group to be clean.
        return subprocess.call(["sleep", arg])
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
