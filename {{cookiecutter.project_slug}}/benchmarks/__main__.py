"""`python -m benchmarks` (`make bench`): start the setups, run every measure in
interleaved rounds, print the ratios, write var/bench/results.json and .png.

`--quick` runs one short round with small files: it proves the bench works,
its figures mean nothing. `BASE_URL` points the measures that need only the
service at a running deployment instead of a local stack; measures whose
reference setup it cannot provide are left out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

from benchmarks import load, measures, results, setups
from {{ cookiecutter.package_name }} import FRAMEWORK
from stack import PROJECT_ROOT, Stack, StackError
from stack.project import gunicorn_settings

OUT_DIR = PROJECT_ROOT / "var" / "bench"
# The classes measured beside the project's own; aiohttp's app runs only on its worker.
OTHER_CLASSES = {"flask": ("sync", "gthread", "gevent"), "django": ("sync", "gthread", "gevent")}
CPUS = len(os.sched_getaffinity(0))


class Remote:
    """A deployment at BASE_URL, standing in for the service's local stack."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def ready_workers(self) -> set[int]:
        return set()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="one short round, small files")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where results go (var/bench)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    load.wrk_path()
    plan = measures.Plan.quick() if args.quick else measures.Plan.full(args.rounds)
    settings = gunicorn_settings(dict(os.environ))
    default_class = settings.worker_class
    # Side by side with the default: every other class this framework can run.
    others = [c for c in OTHER_CLASSES.get(FRAMEWORK, ()) if c != default_class]
    base_url = os.environ.get("BASE_URL", "").strip()
    chosen = setups.setups(FRAMEWORK, default_class, others)
    if base_url:
        chosen = []
    args.out.mkdir(parents=True, exist_ok=True)
    stacks: dict[str, Stack] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, contextlib.ExitStack() as cleanup:
        try:
            for setup in chosen:
                print(f"starting {setup.name}: {setup.why}", flush=True)
                stacks[setup.name] = setups.start(setup, Path(tmp))
                cleanup.callback(stacks[setup.name].stop)
            if base_url:
                stacks["service"] = Remote(base_url)  # type: ignore[assignment]
            classes = {default_class: stacks["service"]} if not base_url else {}
            classes.update({c: stacks[f"class_{c}"] for c in others if f"class_{c}" in stacks})
            downloads = None if base_url else measures.Downloads(plan, stacks)
            if downloads is not None:
                cleanup.callback(downloads.close)
            order = [
                m
                for m in (
                    downloads,
                    measures.SlowClients(plan, stacks),
                    measures.overhead(plan, stacks),
                    measures.metrics(plan, stacks),
                    measures.counters(plan, stacks),
                    measures.locks(plan, stacks),
                    measures.recycling(plan, stacks),
                    measures.WorkerClasses(plan, classes),
                )
                if m is not None
            ]
            for number in range(plan.rounds):
                for measure in order:
                    print(f"round {number + 1}/{plan.rounds}: {measure.title}", flush=True)
                    measure.round()
        except StackError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1

    checks = [check for measure in order for check in measure.checks()]
    context = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": CPUS, "platform": platform.platform()},
        "framework": FRAMEWORK,
        "worker_class": default_class,
        "quick": args.quick,
        "rounds": plan.rounds,
        "seconds_per_run": plan.seconds,
    }
    print()
    print(results.figures_text(order))
    print()
    print(results.table(checks))
    results.write_json(args.out / "results.json", context, order, checks)
    classes_measure = next((m for m in order if m.name == "worker_classes"), None)
    title = f"{FRAMEWORK}, {default_class} worker by default, {CPUS} CPUs"
    results.write_chart(args.out / "results.png", title, checks, classes_measure)
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
