"""The compose stage: each framework's default project, its stack in a real Docker engine.

The static checks in test_containers.py cannot show that the stack comes up.
Here the engine from engine.py (the machine's own, or a dockerd started for
this session) builds the web image and runs nginx, web (scaled to 3) and
Redis, on the official base images or local stand-ins of them. The project's
own `make test-compose` must pass, and beyond it:

- more than one web container answers through nginx;
- `docker compose stop` with requests in flight loses none of them;
- `docker compose down --volumes` leaves no container, network or volume.

Each phase is timed; the figures are printed at the end of the session and
written to build/compose-timings.json.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conftest import TEMPLATE_ROOT, Project, clean_env, log_tail, run_logged
from engine import BUILD_DIR, Engine, EngineUnavailable, base_images, run

FRAMEWORKS = json.loads((TEMPLATE_ROOT / "cookiecutter.json").read_text())["framework"]
TIMINGS_FILE = BUILD_DIR / "compose-timings.json"
WEB_SCALE = 3
# Ceilings, far above what each step takes here (see the timings), so a hung
# step fails the run instead of eating CI's 90 minutes.
BUILD_TIMEOUT = 900
UP_TIMEOUT = 300
STOP_TIMEOUT = 120
MAKE_TEST_COMPOSE_TIMEOUT = 1500
# The in-flight requests: a 5 s child task each, through nginx, stopped mid-way.
IN_FLIGHT_REQUESTS = 6
TASK_SECONDS = 5


@pytest.fixture(scope="session")
def timings(request: pytest.FixtureRequest) -> Iterator[dict]:
    """Seconds per phase; printed and written to build/compose-timings.json at the end."""
    figures: dict = {}
    yield figures
    TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS_FILE.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    # Printed past pytest's capture (as `capsys.disabled()` does), so CI's log shows it.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    uncaptured = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with uncaptured:
        print(f"\ncompose timings (s), also in {TIMINGS_FILE}: {json.dumps(figures)}")


@pytest.fixture(scope="session")
def engine(timings: dict) -> Iterator[Engine]:
    """An engine with Compose v2 for the whole session; ours is stopped at the end."""
    started = Engine()
    try:
        started.start()
    except EngineUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"the Docker engine could not be started: {error}", pytrace=False)
    try:
        yield started
    finally:
        timings["engine"] = started.timings
        started.stop()


@pytest.fixture(scope="session")
def images(engine: Engine) -> dict[str, str]:
    """PYTHON_IMAGE, NGINX_IMAGE, REDIS_IMAGE: official, or stand-ins built once."""
    try:
        return base_images(engine)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"the base images could not be had: {error}", pytrace=False)


def compose_env(engine: Engine, images: dict[str, str], **extra: str) -> dict[str, str]:
    """A clean environment for make and compose: the engine's, the base images, `extra`."""
    inherited = {
        name: value
        for name, value in clean_env().items()
        if not name.startswith(("DOCKER_", "COMPOSE_"))
    }
    return {**inherited, **engine.env, **images, **extra}


@pytest.fixture(scope="module", params=FRAMEWORKS)
def project(request: pytest.FixtureRequest, generate) -> Project:
    """The framework's default project, with the .env (its secrets) generation wrote."""
    generated = generate(framework=request.param)
    assert (generated.path / ".env").is_file(), "the post-generation hook wrote no .env"
    return generated


@dataclass
class Stack:
    """One compose project of a generated project, driven step by step."""

    project: Project
    name: str
    env: dict[str, str]
    timings: dict[str, float]

    def compose(self, step: str, *args: str, timeout: float) -> float:
        """`docker compose ARGS`, logged to the project's log dir; returns its seconds."""
        log = self.project.log_dir / f"compose-{self.name}-{step}.log"
        started = time.monotonic()
        status = run_logged(
            ["docker", "compose", *args],
            cwd=self.project.path,
            log=log,
            env=self.env,
            timeout=timeout,
        )
        seconds = round(time.monotonic() - started, 1)
        if status != 0:
            # What the containers said, before the fixture's `down` removes them.
            logs = run(
                ["docker", "compose", "logs", "--no-color", "--tail", "40"],
                env=self.env,
                timeout=60,
                check=False,
            )
            pytest.fail(
                f"`docker compose {' '.join(args)}` exited {status}\n{log_tail(log)}\n"
                f"--- docker compose logs --tail 40 ---\n{logs.stdout}{logs.stderr}",
                pytrace=False,
            )
        return seconds

    def up(self, step: str = "up") -> None:
        """Up and healthy, with WEB_SCALE web containers; quick when already up."""
        scale = f"web={WEB_SCALE}"
        seconds = self.compose(
            step, "up", "--detach", "--wait", "--scale", scale, timeout=UP_TIMEOUT
        )
        self.timings.setdefault("up_to_healthy", seconds)

    def down(self, step: str = "down") -> float:
        return self.compose(step, "down", "--volumes", "--remove-orphans", timeout=STOP_TIMEOUT)

    def output(self, *args: str) -> str:
        """What a quick `docker compose ARGS` prints."""
        return run(["docker", "compose", *args], env=self.env, timeout=60).stdout

    @property
    def port(self) -> int:
        """The host port compose published nginx's 8080 on (HTTP_PORT=0: the engine's pick)."""
        return int(self.output("port", "nginx", "8080").strip().rsplit(":", 1)[1])

    def web_hostnames(self) -> set[str]:
        """The web containers' hostnames: docker's default is the id's first 12 characters."""
        return {cid[:12] for cid in self.output("ps", "--quiet", "web").split()}


@pytest.fixture(scope="module")
def stack(project: Project, engine: Engine, images, timings: dict) -> Iterator[Stack]:
    """The project's stack, built and up, under a compose project of this test's own."""
    framework = project.answers["framework"]
    name = f"{project.path.name}-stack"
    figures = timings.setdefault(framework, {})
    env = compose_env(engine, images, COMPOSE_PROJECT_NAME=name, HTTP_PORT="0")
    started = Stack(project=project, name=name, env=env, timings=figures)
    # A stack left by an interrupted session would otherwise be reused.
    started.down("down-before")
    try:
        figures["build"] = started.compose("build", "build", timeout=BUILD_TIMEOUT)
        started.up()
        yield started
    finally:
        started.down("down-after")


def request_json(
    port: int, method: str, path: str, body: dict | None = None, timeout: float = 30
) -> tuple[int, dict]:
    """One request to nginx on a new connection; the status and the decoded JSON answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if payload else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, {"body": raw.decode(errors="replace")}


def test_several_web_containers_answer_through_nginx(stack: Stack):
    stack.up("up-for-spread")
    containers = stack.web_hostnames()
    assert len(containers) == WEB_SCALE, containers
    port = stack.port
    answers = [request_json(port, "GET", "/api/worker") for _ in range(60)]
    assert all(status == 200 for status, _ in answers), answers
    hosts = {body["host"] for _, body in answers}
    # Every answer names one of this stack's web containers, and more than one answered.
    assert hosts <= containers, (hosts, containers)
    assert len(hosts) >= 2, f"only {hosts} of {containers} answered 60 requests"
    stack.timings["web_hosts_answering"] = len(hosts)


def test_stop_with_requests_in_flight_loses_none(stack: Stack):
    stack.up("up-for-stop")
    port = stack.port
    body = {"task": "sleep", "seconds": TASK_SECONDS, "timeout": 2 * TASK_SECONDS}
    results: list[tuple[int, dict, float]] = []

    def call() -> None:
        try:
            status, answer = request_json(port, "POST", "/api/tasks/run", body, timeout=60)
        except OSError as error:
            status, answer = -1, {"error": repr(error)}
        results.append((status, answer, time.monotonic()))

    threads = [threading.Thread(target=call) for _ in range(IN_FLIGHT_REQUESTS)]
    for thread in threads:
        thread.start()
    # Long enough for every request to reach a worker, well short of the task's 5 s.
    time.sleep(1.5)
    stop_started = time.monotonic()
    stack.timings["stop"] = stack.compose("stop", "stop", timeout=STOP_TIMEOUT)
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == IN_FLIGHT_REQUESTS, results
    failed = [(status, answer) for status, answer, _ in results if status != 200]
    assert not failed, f"requests in flight during `docker compose stop` failed: {failed}"
    assert all(answer["returncode"] == 0 for _, answer, _ in results), results
    # They really were in flight: each finished after the stop began.
    assert all(finished > stop_started for _, _, finished in results), results


def test_down_leaves_nothing_of_the_project(stack: Stack, engine: Engine):
    stack.timings["down"] = stack.down()
    label = f"label=com.docker.compose.project={stack.name}"
    leftovers = {
        kind: engine.docker(*command, "--quiet", "--filter", label).stdout.split()
        for kind, command in {
            "containers": ("ps", "--all"),
            "networks": ("network", "ls"),
            "volumes": ("volume", "ls"),
        }.items()
    }
    assert leftovers == {"containers": [], "networks": [], "volumes": []}, leftovers


def test_make_test_compose_passes(project: Project, engine: Engine, images, timings: dict):
    """The project's own target: build, up scaled, the integration suite, down."""
    figures = timings.setdefault(project.answers["framework"], {})
    started = time.monotonic()
    project.make("test-compose", timeout=MAKE_TEST_COMPOSE_TIMEOUT, env=compose_env(engine, images))
    figures["make_test_compose"] = round(time.monotonic() - started, 1)
    log = project.log_dir / "make-test-compose.log"
    summary = re.findall(r"=+ (.*) in ([\d.]+)s", log.read_text(encoding="utf-8"))
    if summary:
        figures["integration_suite"] = float(summary[-1][1])
        figures["integration_suite_result"] = summary[-1][0]
    # The project's own name for its test stack: nothing of it may outlive the target.
    name = f"{project.path.name}-test"
    label = f"label=com.docker.compose.project={name}"
    assert not engine.docker("ps", "--all", "--quiet", "--filter", label).stdout.split()
