"""The eight measures. Each runs its setups back to back once per round.

A measure records samples per variant (one dict of figures per round) and
turns their medians into checks: a ratio against its reference, and the
target the product promises for it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

import requests

from benchmarks import load, probes
from {{ cookiecutter.package_name }}.exports import DATA_NAME, META_NAME
from stack import Stack
from stack.project import STATIC_DIR

WORKER = "/api/worker"
CONNECTIONS = 32
CLASS_CONNECTIONS = (8, 32, 128)
SLOW_CLIENTS = 8
PROBES_PER_SECOND = 50


@dataclass(frozen=True)
class Plan:
    """How long and how big: the full run, or a short one that only proves it works."""

    rounds: int
    seconds: float
    recycling_seconds: float
    # The worker classes at 128 connections: long enough for a tail to show.
    crowd_seconds: float
    download_mib: int
    slow_export_mib: int

    @classmethod
    def full(cls, rounds: int) -> Plan:
        # Recycling runs long enough for workers to reach max_requests under load.
        return cls(rounds, 5.0, 30.0, 20.0, 256, 64)

    @classmethod
    def quick(cls) -> Plan:
        return cls(1, 1.0, 1.0, 1.0, 8, 4)


@dataclass(frozen=True)
class Check:
    measure: str
    what: str
    ratio: float
    # (">=", 0.9), ("<=", 1.5), or None where the issue asks only for the figure.
    target: tuple[str, float] | None

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        op, bound = self.target
        return self.ratio >= bound if op == ">=" else self.ratio <= bound

    def as_dict(self) -> dict:
        return {
            "measure": self.measure,
            "what": self.what,
            "ratio": round(self.ratio, 3),
            "target": f"{self.target[0]} {self.target[1]:g}" if self.target else None,
            "met": self.met,
        }


@dataclass
class Measure:
    name: str
    title: str
    samples: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))

    def median(self, variant: str, figure: str) -> float:
        values = [sample[figure] for sample in self.samples.get(variant, [])]
        return statistics.median(values) if values else float("nan")

    def ratio(self, variant: str, reference: str, figure: str) -> float:
        base = self.median(reference, figure)
        return self.median(variant, figure) / base if base else float("nan")

    def has(self, *variants: str) -> bool:
        return all(self.samples.get(variant) for variant in variants)

    def figures(self) -> dict[str, dict[str, float]]:
        return {
            variant: {key: round(self.median(variant, key), 2) for key in samples[0]}
            for variant, samples in self.samples.items()
        }


# -- 1. downloads ----------------------------------------------------------


class Downloads(Measure):
    def __init__(self, plan: Plan, stacks: dict[str, Stack]) -> None:
        super().__init__("downloads", "Downloads: X-Accel-Redirect, the app sending; nginx static")
        self.size = plan.download_mib << 20
        service, direct = stacks["service"], stacks.get("direct")
        meta = _create_export(service, self.size, "bench-download")
        self.static_copy = STATIC_DIR / f".bench-{os.getpid()}.txt"
        source = service.export_dir / "files" / meta["id"]
        os.link(source / DATA_NAME, self.static_copy)
        self.urls = {
            "nginx static": f"{service.base_url}/static/{self.static_copy.name}",
            "X-Accel-Redirect": service.base_url + meta["download_url"],
        }
        if direct is not None:
            # The same bytes, published in the direct stack's store too.
            target = direct.export_dir / "files" / meta["id"]
            target.mkdir(parents=True)
            for name in (DATA_NAME, META_NAME):
                os.link(source / name, target / name)
            self.urls["app sends"] = direct.base_url + meta["download_url"]

    def round(self) -> None:
        for variant, url in self.urls.items():
            started = time.perf_counter()
            received = 0
            with requests.get(url, stream=True, timeout=300) as response:
                response.raise_for_status()
                for chunk in response.iter_content(1 << 20):
                    received += len(chunk)
            if received != self.size:
                raise RuntimeError(f"{variant}: {received} of {self.size} bytes")
            seconds = time.perf_counter() - started
            self.samples[variant].append({"mib_per_s": self.size / seconds / (1 << 20)})

    def close(self) -> None:
        self.static_copy.unlink(missing_ok=True)

    def checks(self) -> list[Check]:
        found = [
            Check(
                self.name,
                "X-Accel-Redirect vs nginx static (MiB/s)",
                self.ratio("X-Accel-Redirect", "nginx static", "mib_per_s"),
                (">=", 0.9),
            )
        ]
        if self.has("app sends"):
            found.append(
                Check(
                    self.name,
                    "X-Accel-Redirect vs the app sending (MiB/s)",
                    self.ratio("X-Accel-Redirect", "app sends", "mib_per_s"),
                    (">=", 2.5),
                )
            )
        return found


# -- 2. a fast endpoint while slow clients download ----------------------------


class SlowClients(Measure):
    def __init__(self, plan: Plan, stacks: dict[str, Stack]) -> None:
        super().__init__("slow_clients", f"{WORKER} while {SLOW_CLIENTS} slow clients download")
        self.plan = plan
        size = plan.slow_export_mib << 20
        self.targets = {
            name: (stack, _create_export(stack, size, "bench-slow")["download_url"])
            for name, stack in stacks.items()
            if name in ("service", "naive")
        }

    def round(self) -> None:
        for name, (stack, path) in self.targets.items():
            url = stack.base_url + WORKER
            idle = probes.probe(url, per_second=PROBES_PER_SECOND, seconds=self.plan.seconds)
            with probes.SlowDownloads(stack.base_url, path, SLOW_CLIENTS):
                busy = probes.probe(url, per_second=PROBES_PER_SECOND, seconds=self.plan.seconds)
            self.samples[f"{name}, idle"].append(idle.as_dict())
            self.samples[f"{name}, slow downloads"].append(busy.as_dict())
            # Let the downloads' connections close before the next measure.
            time.sleep(1.0)

    def checks(self) -> list[Check]:
        found = [
            Check(
                self.name,
                "fast requests answered during slow downloads (fraction)",
                self.median("service, slow downloads", "answered_pct") / 100,
                (">=", 1.0),
            ),
            Check(
                self.name,
                "p99 during slow downloads vs idle",
                self.ratio("service, slow downloads", "service, idle", "p99_ms"),
                ("<=", 1.5),
            ),
        ]
        if self.has("naive, slow downloads"):
            found.append(
                Check(
                    self.name,
                    "naive setup: fast requests answered during slow downloads (fraction)",
                    self.median("naive, slow downloads", "answered_pct") / 100,
                    None,
                )
            )
        return found


# -- 3 to 6: throughput of one endpoint against its reference -------------------


class Throughput(Measure):
    """Variants (label, stack, path, body) under the same wrk load, in turns."""

    def __init__(
        self,
        name: str,
        title: str,
        seconds: float,
        variants: list[tuple[str, Stack | None, str, dict | None]],
        checks: list[tuple[str, str, str, str, tuple[str, float] | None]],
    ) -> None:
        super().__init__(name, title)
        self.seconds = seconds
        self.variants = [v for v in variants if v[1] is not None]
        self.wanted = checks
        self.boots: dict[str, int] = {}

    def round(self) -> None:
        for label, stack, path, body in self.variants:
            assert stack is not None
            before = len(stack.ready_workers())
            measured = load.run(
                stack.base_url + path,
                connections=CONNECTIONS,
                seconds=self.seconds,
                method="POST" if body is not None else "GET",
                body=body,
            )
            self.boots[label] = self.boots.get(label, 0) + len(stack.ready_workers()) - before
            self.samples[label].append(measured.as_dict())

    def figures(self) -> dict[str, dict[str, float]]:
        found = super().figures()
        for label, booted in self.boots.items():
            found[label]["workers_booted"] = booted
        return found

    def checks(self) -> list[Check]:
        return [
            Check(self.name, what, self.ratio(variant, reference, figure), target)
            for what, variant, reference, figure, target in self.wanted
            if self.has(variant, reference)
        ]


def overhead(plan: Plan, stacks: dict[str, Stack]) -> Throughput:
    return Throughput(
        "overhead",
        f"Toolkit overhead: {WORKER} vs a bare hello world",
        plan.seconds,
        [
            ("service", stacks.get("service"), WORKER, None),
            ("hello world", stacks.get("hello"), WORKER, None),
        ],
        [("service vs hello world (req/s)", "service", "hello world", "rps", (">=", 0.9))],
    )


def metrics(plan: Plan, stacks: dict[str, Stack]) -> Throughput:
    return Throughput(
        "metrics",
        f"Request metrics: {WORKER} counted and timed vs not",
        plan.seconds,
        [
            ("metrics on", stacks.get("service"), WORKER, None),
            ("metrics off", stacks.get("unmetered"), WORKER, None),
        ],
        [("metrics on vs off (req/s)", "metrics on", "metrics off", "rps", (">=", 0.9))],
    )


def counters(plan: Plan, stacks: dict[str, Stack]) -> Throughput:
    path = "/api/counters/bench/incr"
    return Throughput(
        "counters",
        "Shared state: counter increments vs a bare view doing redis-py's INCRBY",
        plan.seconds,
        [
            ("increments, Redis", stacks.get("service"), path, {"by": 1}),
            ("bare INCRBY view", stacks.get("hello"), path, {"by": 1}),
            ("increments, embedded", stacks.get("embedded"), path, {"by": 1}),
        ],
        [
            (
                "increments vs a bare view doing INCRBY (req/s)",
                "increments, Redis",
                "bare INCRBY view",
                "rps",
                (">=", 0.9),
            ),
            (
                "embedded increments vs Redis increments (req/s)",
                "increments, embedded",
                "increments, Redis",
                "rps",
                (">=", 0.8),
            ),
        ],
    )


def locks(plan: Plan, stacks: dict[str, Stack]) -> Throughput:
    path = "/api/locked-increment/bench"
    body = {"hold_ms": 0}
    return Throughput(
        "locks",
        f"Contended locked increments ({CONNECTIONS} clients, one lock) vs redis-py's Lock",
        plan.seconds,
        [
            ("ours, fenced", stacks.get("service"), path, body),
            ("redis-py Lock", stacks.get("redis_py_lock"), path, body),
        ],
        [("ours vs redis-py's Lock (req/s)", "ours, fenced", "redis-py Lock", "rps", (">=", 1.0))],
    )


def recycling(plan: Plan, stacks: dict[str, Stack]) -> Throughput:
    return Throughput(
        "recycling",
        f"Worker recycling: default max_requests vs off, {WORKER}",
        plan.recycling_seconds,
        [
            ("default", stacks.get("service"), WORKER, None),
            ("recycling off", stacks.get("no_recycling"), WORKER, None),
        ],
        [
            ("default vs off (req/s)", "default", "recycling off", "rps", (">=", 0.95)),
            ("default vs off (p99)", "default", "recycling off", "p99_ms", ("<=", 1.2)),
        ],
    )


# -- 7. worker classes ---------------------------------------------------------


class WorkerClasses(Measure):
    def __init__(self, plan: Plan, classes: dict[str, Stack]) -> None:
        super().__init__("worker_classes", f"Worker classes side by side, {WORKER}")
        self.plan = plan
        self.classes = classes

    def round(self) -> None:
        for connections in CLASS_CONNECTIONS:
            seconds = self.plan.crowd_seconds if connections >= 128 else self.plan.seconds
            for worker_class, stack in self.classes.items():
                measured = load.run(
                    stack.base_url + WORKER, connections=connections, seconds=seconds
                )
                self.samples[f"{worker_class} @{connections}"].append(measured.as_dict())

    def checks(self) -> list[Check]:
        # The classes that serve many connections per worker must not pay for it in
        # the tail or in throughput, against sync workers behind the same nginx.
        found = []
        for worker_class in ("gthread", "gevent"):
            for connections in (32, 128):
                ours, sync = f"{worker_class} @{connections}", f"sync @{connections}"
                if not self.has(ours, sync):
                    continue
                found += [
                    Check(
                        self.name,
                        f"{worker_class} p99 vs sync p99 at {connections} connections",
                        self.ratio(ours, sync, "p99_ms"),
                        ("<=", 3.0),
                    ),
                    Check(
                        self.name,
                        f"{worker_class} req/s vs sync req/s at {connections} connections",
                        self.ratio(ours, sync, "rps"),
                        (">=", 1.0),
                    ),
                ]
        return found


def _create_export(stack: Stack, size: int, label: str) -> dict:
    response = requests.post(
        f"{stack.base_url}/api/exports", json={"size_bytes": size, "label": label}, timeout=300
    )
    response.raise_for_status()
    return response.json()
