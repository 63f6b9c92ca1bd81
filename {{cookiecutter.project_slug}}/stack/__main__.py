"""`python -m stack`: run redis-server, gunicorn and nginx until SIGINT or SIGTERM.

Prints one line, `BASE_URL=http://127.0.0.1:<port>`, once all three answer,
so a script or CI job can read where the service is. `--render-nginx DIR`
only writes the nginx configuration, for `nginx -t`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
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

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    # Installed before start, so a signal during start still stops cleanly.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    stack = Stack(args.run_dir)
    try:
        stack.start()
        if stop_requested.is_set():
            return 0
        print(f"BASE_URL={stack.base_url}", flush=True)
        while not stop_requested.wait(WATCH_SECONDS):
            dead = [name for name, alive in stack.running().items() if not alive]
            if dead:
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


if __name__ == "__main__":
    sys.exit(main())
