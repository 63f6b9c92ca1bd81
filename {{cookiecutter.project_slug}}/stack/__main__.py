"""`python -m stack`: run redis-server, gunicorn and nginx until SIGINT or SIGTERM.

Prints one line, `BASE_URL=http://127.0.0.1:<port>`, once all three answer,
so a script or CI job can read where the service is. `--render-nginx DIR`
only writes the nginx configuration, for `nginx -t`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
from pathlib import Path
from types import FrameType

from stack import PROJECT_ROOT, Stack, StackError, render_nginx

# How often the runner checks that the three servers are still alive.
WATCH_SECONDS = 1.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stack",
        description="Run the service locally: redis-server, gunicorn and nginx on loopback.",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=PROJECT_ROOT / "var" / "stack",
        help="directory for sockets, logs, exports and nginx's files (default: var/stack)",
    )
    parser.add_argument(
        "--render-nginx",
        type=Path,
        metavar="DIR",
        help="only render the nginx configuration into DIR and exit",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.render_nginx is not None:
        try:
            conf = render_nginx(args.render_nginx)
        except StackError as exc:
            print(f"stack: {exc}", file=sys.stderr)
            return 1
        print(f"NGINX_CONF={conf}", flush=True)
        return 0

    # A signal handler may only set a flag and wake a file descriptor: one that
    # takes a lock (threading.Event.set) can deadlock against the main thread
    # holding that same lock in Event.wait, and the stack would never stop.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
        with contextlib.suppress(BlockingIOError):
            os.write(wake_write, b"x")

    # Installed before start, so a signal during start still stops cleanly.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    stack = Stack(args.run_dir)
    try:
        stack.start()
        if stop_requested:
            return 0
        print(f"BASE_URL={stack.base_url}", flush=True)
        # Watch what this stack started: with the embedded backend there is no Redis.
        started = {name for name, alive in stack.running().items() if alive}
        while not stop_requested:
            select.select([wake_read], [], [], WATCH_SECONDS)
            alive = stack.running()
            dead = sorted(name for name in started if not alive[name])
            if dead and not stop_requested:
                print(
                    f"stack: {', '.join(dead)} stopped unexpectedly; see the logs in "
                    f"{stack.run_dir}. Stopping the rest.",
                    file=sys.stderr,
                )
                return 1
        return 0
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        os.close(wake_read)
        os.close(wake_write)


if __name__ == "__main__":
    sys.exit(main())
