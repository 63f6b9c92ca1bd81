"""Each generated project is finished code: clean, linted, configured, and its tests pass.

One project per worker class, and one with the examples off. Each check runs
on the same generated project; `make test` of the project itself comes last
in each group, as the proof that the project works the moment it exists.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import proofs
from background import Background, Outcome
from conftest import (
    MAKE_TEST_TIMEOUT,
    PLUGINS_DIR,
    Project,
    check,
    chosen_answers,
    clean_env,
    default_worker_class,
    generated_name,
    log_tail,
    options_table,
    questions,
    supported_combinations,
)

# Every supported framework x worker class, and each framework without the examples.
VARIANTS = [
    *({"framework": f, "worker_class": w} for f, w in supported_combinations()),
    *({"framework": f, "include_examples": "false"} for f in questions()["framework"]),
]
# Jinja syntax, and the word cookiecutter, must not survive generation.
JINJA_MARKERS = ("{{", "{%", "{#")
LEFTOVER_MARKERS = (*JINJA_MARKERS, "cookiecutter")
# Two exceptions. cruft's record of the template (see hooks/post_gen_project.py)
# keeps the answers under the key "cookiecutter", the form cruft reads.
CRUFT_RECORD = Path(".cruft.json")
# GitHub Actions' own expressions, ${{ ... }}, in the workflows (kept as written
# by a raw block): their braces are let through, what is inside them is still
# checked (a ${{ cookiecutter.x }} left behind still fails).
GITHUB_EXPRESSION = re.compile(r"\$\{\{([^{}]*)\}\}")
WORKFLOWS_DIR = (".github", "workflows")
# Made by tools, never by the template: their presence means the template dir
# itself was polluted (run `make clean-template`).
TOOL_LEFTOVERS = {
    ".venv",
    "var",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    "template-options.toml",
}
# How gunicorn.conf.py names a worker class the answers name briefly.
CONFIGURED_AS = {"aiohttp": "aiohttp.GunicornWebWorker"}


# The generated projects' marker for a proof whose outcome no worker class changes.
SAME_FOR_EVERY_CLASS = "same_for_every_worker_class"


def variant_id(answers: dict[str, str]) -> str:
    return "-".join(answers.values())


@pytest.fixture(scope="module", params=VARIANTS, ids=variant_id)
def project(request, generate) -> Project:
    return generate(**request.param)


def worker_class_of(project: Project) -> str:
    return chosen_answers(project)["worker_class"]


def find_program(name: str) -> str:
    # Debian installs nginx into /usr/sbin, which a normal user's PATH lacks.
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")
    assert found, f"{name} is not installed; `make test` runs the script that installs it"
    return found


def is_text(path: Path) -> bool:
    return b"\0" not in path.read_bytes()[:8192]


def test_no_template_syntax_is_left(project):
    found = []
    for relative in project.files:
        for marker in LEFTOVER_MARKERS:
            if marker in str(relative):
                found.append(f"{relative} (in its name): {marker}")
        path = project.path / relative
        if not path.is_file() or not is_text(path):
            continue
        markers = JINJA_MARKERS if relative == CRUFT_RECORD else LEFTOVER_MARKERS
        in_workflow = relative.parts[:2] == WORKFLOWS_DIR
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            checked = GITHUB_EXPRESSION.sub(r"\1", line) if in_workflow else line
            for marker in markers:
                if marker in checked.lower():
                    found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "template syntax left in the generated project:\n" + "\n".join(found)
    # Jinja blocks inside the README's opening paragraph leave it whole lines: none
    # starts with a space, and its first sentence reads on across them.
    opening = (project.path / "README.md").read_text(encoding="utf-8").split("\n\n")[2]
    assert not [line for line in opening.splitlines() if line.startswith(" ")], opening
    assert "behind nginx, with everything the workers share in Redis" in " ".join(
        opening.split()
    ), opening


def test_no_options_table_or_tool_leftovers(project):
    leftovers = sorted(
        {
            str(Path(*p.parts[: i + 1]))
            for p in project.files
            for i, part in enumerate(p.parts)
            if part in TOOL_LEFTOVERS or part.endswith(".egg-info")
        }
    )
    assert not leftovers, (
        f"the generated project holds files no template should carry: {leftovers} "
        "(`make clean-template` removes caches left in the template directory)"
    )


def test_only_the_chosen_answers_files_are_there(project):
    # The same rule as the hook: kept when every variable that lists a path
    # was answered with one of the values that list it.
    chosen = chosen_answers(project)
    kept_under: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for variable, by_value in options_table().items():
        for value, paths in by_value.items():
            for path in paths:
                kept_under[path][variable].add(value)

    def kept(path: str) -> bool:
        # A listed path goes with any listed directory above it (counters.py in django_project/).
        listed = [p for p in kept_under if path == p or path.startswith(p.rstrip("/") + "/")]
        return all(
            chosen[variable] in values
            for ancestor in listed
            for variable, values in kept_under[ancestor].items()
        )

    wrong = []
    for path in kept_under:
        there = (project.path / generated_name(path, chosen)).exists()
        if kept(path) != there:
            wrong.append(f"{path}: {'missing' if kept(path) else 'should be removed'}")
    assert not wrong, wrong


def test_ruff_check_and_format_pass(project):
    for command in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        result = project.run(sys.executable, "-m", "ruff", *command)
        check(result, f"ruff {command[0]}")


def test_mypy_strict_passes(project):
    # `make lint`'s type check, with the project's own mypy and stubs ([tool.mypy]).
    project.install()
    check(project.run(project.python, "-m", "mypy", "--no-incremental"), "mypy")


@pytest.fixture(scope="module")
def nginx_dir(project, tmp_path_factory) -> Path:
    project.install()
    directory = tmp_path_factory.mktemp("nginx")
    result = project.run(project.python, "-m", "stack", "--render-nginx", directory)
    check(result, "python -m stack --render-nginx")
    assert (directory / "nginx.conf").is_file(), sorted(directory.iterdir())
    return directory


def nginx_text(directory: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.conf")))


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[unit]


def test_nginx_config_passes_nginx_t(project, nginx_dir):
    conf = nginx_dir / "nginx.conf"
    error_log = nginx_dir / "error.log"
    result = project.run(find_program("nginx"), "-t", "-p", nginx_dir, "-c", conf, "-e", error_log)
    check(result, "nginx -t")


def test_gunicorn_check_config_loads_the_app(project, tmp_path):
    project.install()
    env = clean_env(
        # A Redis address is required to start; --check-config never connects.
        REDIS_URL="redis://127.0.0.1:1/0",
        EXPORT_DIR=str(tmp_path / "exports"),
        # Django refuses to start without a key (with DEBUG off, as here).
        DJANGO_SECRET_KEY="check-config-" + "k" * 50,
    )
    gunicorn = project.python.parent / "gunicorn"
    result = project.run(gunicorn, "--check-config", "-c", "gunicorn.conf.py", env=env)
    check(result, "gunicorn --check-config")


def test_resolved_gunicorn_settings_fit_the_worker_class(project, nginx_dir):
    worker_class = worker_class_of(project)
    settings = project.resolved_gunicorn_settings()

    assert settings["worker_class_name"] == CONFIGURED_AS.get(worker_class, worker_class)
    assert settings["workers"] >= 2, "one worker would hide every multi-worker bug"
    if worker_class == "gthread":
        assert settings["threads"] > 1
    else:
        assert settings["threads"] == 1, "threads make any worker class gthread"
    if worker_class == "gevent":
        assert settings["worker_connections"] > 0
        assert settings["preload_app"] is False, "gevent must patch before the app is imported"

    # Recycling at staggered moments: never all workers at once.
    assert settings["max_requests"] > 0
    assert settings["max_requests_jitter"] > 0
    assert settings["timeout"] > 0
    assert settings["graceful_timeout"] > 0

    # A second service of the same user must not take over the control socket.
    assert settings["control_socket_disable"] or not settings["control_socket"].endswith(
        "/gunicorn.ctl"
    ), settings["control_socket"]

    if os.access("/dev/shm", os.W_OK):
        assert settings["worker_tmp_dir"] == "/dev/shm"

    conf = nginx_text(nginx_dir)
    # nginx must wait for an answer longer than gunicorn lets a worker run.
    read_timeouts = re.findall(r"proxy_read_timeout\s+(\w+);", conf)
    assert read_timeouts, "the nginx config sets no proxy_read_timeout"
    for value in read_timeouts:
        assert seconds(value) > settings["timeout"], (value, settings["timeout"])
    # nginx keeps no upstream connection alive: one would tie requests to a busy
    # worker (stack.conf.template).
    for block in re.findall(r"upstream\s+\S+\s*\{(.*?)\}", conf, re.DOTALL):
        assert not re.search(r"^\s*keepalive", block, re.MULTILINE), block


def test_web_concurrency_sets_the_worker_count(project):
    assert project.resolved_gunicorn_settings(WEB_CONCURRENCY="5")["workers"] == 5


def start_make_test(generate, background: Background, project: dict[str, str]):
    """The run of one project's whole `make test`, its proofs recorded (tests/proofs.py).

    A proof marked same_for_every_worker_class (the mark says why) runs on the
    framework's default class only: the other classes' runs leave it out.
    """
    generated = generate(**project)
    variant = variant_id(project)
    addopts = ["-p", "proof_record"]
    if worker_class_of(generated) != default_worker_class(chosen_answers(generated)["framework"]):
        addopts += ["-m", f"'not {SAME_FOR_EVERY_CLASS}'"]
    env = clean_env(
        PROOF_RECORD=str(proofs.RECORDS[0] / f"{variant}.jsonl"),
        PROOF_VARIANT=variant,
        PYTHONPATH=str(PLUGINS_DIR),
        PYTEST_ADDOPTS=" ".join(addopts),
    )

    def run() -> Outcome:
        generated.install()
        log = generated.log_dir / "make-test.log"
        return background.command(
            ["make", "test"], cwd=generated.path, log=log, env=env, timeout=MAKE_TEST_TIMEOUT
        )

    return run


@pytest.mark.background(start=start_make_test)
def test_the_projects_own_make_test_passes(project, background, request):
    outcome = background.result(request.node.nodeid)
    if outcome.status != 0:
        pytest.fail(f"`make test` exited {outcome.status}\n{log_tail(outcome.log)}", pytrace=False)


@pytest.mark.last
def test_every_proof_left_out_on_a_class_ran_on_its_frameworks_default(background, request):
    """A proof left out of a worker class's run passed (or was skipped, saying why) in
    the same stage of the framework's default class: nothing is proven less."""
    for item in request.session.items:
        if item.get_closest_marker("background") and background.started(item.nodeid):
            with contextlib.suppress(Exception, pytest.fail.Exception):
                background.result(item.nodeid)  # each run's own test reports its failure
    found = proofs.records()
    ran = {
        (record["variant"], record["stage"], record["test"])
        for record in found
        if record.get("outcome") in ("passed", "skipped")
    }
    missing = []
    for record in found:
        if record.get("outcome") != "deselected":
            continue
        framework = record["variant"].split("-", 1)[0]
        default = f"{framework}-{default_worker_class(framework)}"
        if (default, record["stage"], record["test"]) not in ran:
            missing.append(f"{record['variant']} {record['stage']} {record['test']}")
    assert not missing, "left out of a class's run, and not run on the default class:\n" + (
        "\n".join(missing)
    )


@pytest.mark.parametrize("framework", questions()["framework"])
def test_examples_off_keeps_only_the_toolkit(generate, framework):
    project = generate(framework=framework, include_examples="false")
    package = project.path / "src" / project.package_name
    assert not (package / "examples").exists()
    routes = (package / "routes.py").read_text(encoding="utf-8")
    assert "examples" not in routes
    if framework == "flask":
        # The app's blueprints: the examples' goes with them, and nothing names it.
        assert not (package / "flask_app" / "examples.py").exists()
        assert "examples" not in (package / "flask_app" / "__init__.py").read_text("utf-8")
    for toolkit in ("state", "locks", "exports", "processes", "embedded", "backend", "runtime"):
        assert (package / f"{toolkit}.py").is_file(), toolkit
