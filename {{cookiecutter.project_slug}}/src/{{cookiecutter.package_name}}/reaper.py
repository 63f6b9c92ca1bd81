"""The first process of every task: it runs the task's program and, when that
ends, ends everything the program started.

`processes.run` (and its async twin) starts `python -I -S reaper.py WORKER_PID
PROGRAM ARG...` in a session of its own. A session or a process group does not
hold a task: a descendant that calls setsid() leaves both, and one whose parent
exits is handed to init, out of anyone's reach. So this process makes itself a
child subreaper (prctl PR_SET_CHILD_SUBREAPER): whatever the program starts
stays below it, re-parented to it rather than to init, where /proc shows it.

The program leads a process group of its own, as it would without the
reaper: one that signals its own group (`kill 0`) does not reach the reaper.

When the program exits, or when the worker asks with SIGTERM (the task's
timeout, a worker stopping), every process below is stopped (SIGSTOP: a stopped
process starts no other), killed and reaped; only then does this process exit,
with the program's own status. So the task's answer, and the end of its stdout,
never come while anything it started runs. The kernel sends it SIGTERM too when
the worker dies (PR_SET_PDEATHSIG), so a worker that is killed, or that leaves
without ending its tasks, still ends them.

tini and dumb-init reap and forward signals, but exit with their child and leave
its other descendants running. Linux only; the standard library only, run with
-I -S: nothing of the service's or of site-packages is imported, and as
little of the standard library as will do, since every task waits for it to start.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# A program that could not be started ends as a shell reports a command not found.
NOT_STARTED = 127
# Taken only when asked for (sigwaitinfo), so no handler ever runs in mid-step.
SIGNALS = {signal.SIGTERM, signal.SIGCHLD}
# Python ignores these; the program must not inherit that.
DEFAULT_IN_PROGRAM = (signal.SIGPIPE, signal.SIGXFSZ)


def prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def below() -> list[tuple[int, str]]:
    """Every process below this one, as (pid, state letter), read from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
            # The command name (field 2) is in parentheses and may itself contain ") ".
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        children.setdefault(int(ppid), []).append((int(entry), state))
    found: list[tuple[int, str]] = []
    parents = [os.getpid()]
    while parents:
        for pid, state in children.get(parents.pop(), []):
            found.append((pid, state))
            parents.append(pid)
    return found


def send(pids: list[int], sig: int) -> None:
    for pid in pids:
        # Not contextlib.suppress: importing contextlib would add to every task's start.
        try:  # noqa: SIM105
            os.kill(pid, sig)
        except ProcessLookupError:
            pass  # ended meanwhile


def wait_for(program: int) -> int | None:
    """The program's wait status once it exits, or None if SIGTERM comes first."""
    while True:
        if signal.sigwaitinfo(SIGNALS).si_signo == signal.SIGTERM:
            return None
        # One SIGCHLD may stand for several children: reap every one that ended
        # (orphans adopted on the way among them).
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            if pid == program:
                return status


def nothing_below() -> bool:
    """Whether no child is left once every ended one is reaped: then nothing is below,
    since each process below has a child of ours above it (or is one)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass
    except ChildProcessError:
        return True
    return False


def end_all(program: int, status: int | None) -> int | None:
    """Stop, kill and reap every process below; the program's status once reaped."""
    if status is not None and nothing_below():
        return status  # the usual end, with no look through /proc
    # Once every one is stopped (or dead), none can start another, so the list is
    # complete; one that exits meanwhile hands its children to us, and the next
    # list has them.
    found = below()
    while any(state not in "TtZX" for _, state in found):
        send([pid for pid, state in found if state not in "TtZX"], signal.SIGSTOP)
        found = below()
    # Killed, all of them; the loop goes on until nothing is left below, so even a
    # process that slipped past the stop (a thread forking as its group stopped) goes.
    while found:
        send([pid for pid, _ in found], signal.SIGKILL)
        flags = 0  # at least one child of ours was just killed: wait for it
        while True:
            try:
                pid, wait_status = os.waitpid(-1, flags)
            except ChildProcessError:
                return status  # no child left, so nothing below
            if pid == 0:
                break
            if pid == program:
                status = wait_status
            flags = os.WNOHANG
        found = below()
    return status


def exit_as(status: int) -> None:
    """End as the program ended: with its exit code, or killed by its signal."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        sys.exit(code)
    sig = -code
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # its core file, if any, is enough
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    sys.exit(128 + sig)  # a signal whose default is not to end a process


def main(argv: list[str]) -> int:
    worker, program_argv = int(argv[1]), argv[2:]
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != worker:
        return NOT_STARTED  # the worker died before it could be told: start nothing
    try:
        program = os.posix_spawnp(
            program_argv[0],
            program_argv,
            os.environ,
            setpgroup=0,
            setsigmask=(),
            setsigdef=DEFAULT_IN_PROGRAM,
        )
    except OSError:
        return NOT_STARTED
    status = end_all(program, wait_for(program))
    # Not reaped before SIGTERM came, so reaped by end_all, which killed it.
    assert status is not None
    exit_as(status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
