"""Generate projects from this template, once per set of answers, and run their tools.

A generated project is cached for the whole session: the hooks tests, the
checks for each worker class and the teeth tests share it, and its virtual
environment (`make install`) is built at most once.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

import proofs
from background import RUNS_AT_ONCE, Background, spawn_logged, wait_or_stop

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = TEMPLATE_ROOT / "{{cookiecutter.project_slug}}"
OPTIONS_TABLE = TEMPLATE_DIR / "template-options.toml"
# The cookiecutter and ruff of the venv running these tests (the repo's .venv).
TOOLS_BIN = Path(sys.executable).parent

# Variables from the caller's environment that would change what a generated
# project does (its Makefile, gunicorn.conf.py, its integration suite) or how
# its make behaves; every subprocess here runs without them.
RESET_VARIABLES = {
    "APP_MODULE",
    "BASE_URL",
    "DATABASE_URL",
    "FORWARDED_ALLOW_IPS",
    "HTTP_PORT",
    "KEY_PREFIX",
    "MAKEFLAGS",
    "MAKELEVEL",
    "MAKEOVERRIDES",
    "MFLAGS",
    "NAIVE_APP",
    "NAIVE_PACKAGE",
    "NAIVE_VARIANT",
    "PYTHONHOME",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "WEB_CONCURRENCY",
}
RESET_PREFIXES = (
    "BACKEND_",
    "DJANGO_",
    "EXPORT_",
    "GUNICORN_",
    "IDEMPOTENCY_",
    "LOCK_",
    "PYTEST_",
    "RATE_LIMIT_",
    "REDIS_",
    "STACK_",
)

# Generous ceilings (an install takes about a minute, a make test with its fault
# suite five to eight minutes): a hung server must fail the
# run, not eat CI's 90 minutes.
INSTALL_TIMEOUT = 600
MAKE_TEST_TIMEOUT = 1500


# pytest runs inside generated projects get a temporary root of their own: in
# the shared /tmp/pytest-of-<user> their clean-up would rotate this session's
# directories away. Short, because unix socket paths must fit in 108 bytes.
@functools.cache
def inner_temproot() -> Path:
    return Path(tempfile.mkdtemp(prefix="mwt-"))


def clean_env(**overrides: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in RESET_VARIABLES and not name.startswith(RESET_PREFIXES)
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTEST_DEBUG_TEMPROOT"] = str(inner_temproot())
    env.update(overrides)
    return env


def git_env() -> dict[str, str]:
    """Commits by a fixed author, with no user or system git configuration read."""
    return clean_env(
        GIT_AUTHOR_NAME="Template Test",
        GIT_AUTHOR_EMAIL="template-test@example.invalid",
        GIT_COMMITTER_NAME="Template Test",
        GIT_COMMITTER_EMAIL="template-test@example.invalid",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
    )


def run_as_tester(
    *command: str | Path, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """A command under `git_env`, no stdin, its output captured, never raising."""
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=git_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def check(result: subprocess.CompletedProcess[str], what: str) -> None:
    """Fail the test with the command's own output when it did not exit 0."""
    if result.returncode != 0:
        pytest.fail(
            f"{what} exited {result.returncode}:\n{result.stdout}{result.stderr}", pytrace=False
        )


def log_tail(log: Path, lines: int = 80) -> str:
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return f"--- last {lines} lines of {log} ---\n" + "\n".join(text[-lines:])


def run_logged(
    command: list[str], *, cwd: Path, log: Path, env: dict[str, str], timeout: float
) -> int:
    """Run a command with its output streamed to `log`; return its exit status.

    On timeout the whole group gets SIGINT (so a pytest inside stops its
    servers), then SIGKILL.
    """
    return wait_or_stop(spawn_logged(command, cwd=cwd, log=log, env=env), log, timeout)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group (a command and all it started) still runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# compose's variable forms: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}.
COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?)([-?])([^}]*))?\}")


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env file, as compose reads them (no quotes used here)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value for key, value in pairs if not key.lstrip().startswith("#")}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """compose's ${VAR}, ${VAR:-default}, ${VAR-default} and ${VAR:?error} forms."""

    def one(match: re.Match[str]) -> str:
        name, colon, kind, operand = match.groups()
        present = name in variables and (variables[name] != "" or not colon)
        if present:
            return variables[name]
        if kind == "?":
            raise AssertionError(f"compose would refuse to start: {operand}")
        return operand or ""

    return COMPOSE_VARIABLE.sub(one, value)


@dataclass
class Project:
    """A project generated from the template, with the files it was born with."""

    path: Path
    answers: dict[str, str]
    log_dir: Path
    # Paths relative to `path`, listed right after generation, before any tool ran.
    files: tuple[Path, ...] = ()
    installed: bool = field(default=False, repr=False)
    # Background runs and the session's own tests may ask for the venv at once.
    _installing: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def python(self) -> Path:
        return self.path / ".venv" / "bin" / "python"

    @property
    def package_name(self) -> str:
        (package,) = (p.parent.name for p in self.path.glob("src/*/__init__.py"))
        return package

    def make(self, target: str, *, timeout: float, env: dict[str, str] | None = None) -> None:
        """Run `make <target>` in the project and fail the test with the log's tail."""
        log = self.log_dir / f"make-{target}.log"
        status = run_logged(
            ["make", target], cwd=self.path, log=log, env=env or clean_env(), timeout=timeout
        )
        if status != 0:
            pytest.fail(f"`make {target}` exited {status}\n{log_tail(log)}", pytrace=False)

    def install(self) -> None:
        """`make install` once: the project's own venv, used by later checks."""
        with self._installing:
            if not self.installed:
                started = time.monotonic()
                self.make("install", timeout=INSTALL_TIMEOUT)
                proofs.note_stage("install", time.monotonic() - started)
                self.installed = True

    def run(
        self, *command: str | Path, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(part) for part in command],
            cwd=self.path,
            env=env or clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def resolved_gunicorn_settings(self, **env: str) -> dict:
        """What `python gunicorn.conf.py` prints: the settings gunicorn will run with."""
        result = self.run(sys.executable, "gunicorn.conf.py", env=clean_env(**env))
        check(result, "python gunicorn.conf.py")
        return json.loads(result.stdout)


def render_table_path(raw: str) -> str:
    """A path from template-options.toml, spelled as it is inside the template."""
    return re.sub(r"\{\{\s*cookiecutter\.(\w+)\s*\}\}", r"{{cookiecutter.\1}}", raw)


def options_table() -> dict:
    """The template's template-options.toml, with paths as the template spells them."""
    table = tomllib.loads(OPTIONS_TABLE.read_text(encoding="utf-8"))
    return {
        variable: {
            value: [render_table_path(raw) for raw in entry["remove_unless"]]
            for value, entry in by_value.items()
        }
        for variable, by_value in table.items()
    }


def questions() -> dict:
    """cookiecutter.json's questions, each choice list without rendered entries."""
    asked = json.loads((TEMPLATE_ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
    return {
        name: [choice for choice in value if "{" not in str(choice)]
        if isinstance(value, list)
        else value
        for name, value in asked.items()
    }


def supported_combinations() -> list[tuple[str, str]]:
    """(framework, worker_class) pairs the template generates: the table the hook reads."""
    table = questions()["_worker_classes_by_framework"]
    return [(framework, worker) for framework, workers in table.items() for worker in workers]


def refused_combinations() -> list[tuple[str, str]]:
    """Every (framework, worker class) pair, of all the table names, that it does not support."""
    table = questions()["_worker_classes_by_framework"]
    classes = dict.fromkeys(worker for workers in table.values() for worker in workers)
    supported = set(supported_combinations())
    return [(f, w) for f in table for w in classes if (f, w) not in supported]


def asked_answers(answers: dict[str, str]) -> dict[str, str]:
    """Answers as cookiecutter takes them: a worker class the framework fixes is not asked.

    The tests name every project's worker class (aiohttp's included); cookiecutter
    offers only the Flask and Django ones, and renders `__worker_class` from them.
    """
    worker_class = answers.get("worker_class")
    if worker_class is None or worker_class in questions()["worker_class"]:
        return dict(answers)
    return {name: value for name, value in answers.items() if name != "worker_class"}


def choice_defaults() -> dict[str, str]:
    """The default of every choice and yes/no question, spelled as the table spells it."""
    defaults = {}
    for name, default in questions().items():
        if isinstance(default, bool):
            defaults[name] = "true" if default else "false"
        elif isinstance(default, list):
            defaults[name] = str(default[0])
    return defaults


def normalized(answers: dict[str, str]) -> dict[str, str]:
    chosen = {**choice_defaults(), **{name: str(value).lower() for name, value in answers.items()}}
    workers = questions()["_worker_classes_by_framework"][chosen["framework"]]
    if "worker_class" not in answers or workers[0] not in questions()["worker_class"]:
        # The default worker class is the chosen framework's first (cookiecutter.json);
        # a framework whose class is not asked (aiohttp) always runs that one.
        chosen["worker_class"] = workers[0]
    return chosen


def default_worker_class(framework: str) -> str:
    """The framework's default worker class: its first in cookiecutter.json's table."""
    return questions()["_worker_classes_by_framework"][framework][0]


def chosen_answers(project: Project) -> dict[str, str]:
    """Every answer of a project as the table spells it: defaults, then its overrides."""
    return {**normalized(project.answers), "package_name": project.package_name}


def generated_name(template_path: str, answers: dict[str, str]) -> str:
    """A template path as it is named in a project generated with `answers`."""
    return re.sub(r"\{\{cookiecutter\.(\w+)\}\}", lambda m: answers[m.group(1)], template_path)


@pytest.fixture(scope="session", autouse=True)
def _remove_inner_temproot():
    yield
    if inner_temproot.cache_info().currsize:
        shutil.rmtree(inner_temproot(), ignore_errors=True)


@pytest.fixture(scope="session")
def generate(tmp_path_factory: pytest.TempPathFactory):
    """Factory: generate(**answers) -> Project, generated once per set of answers."""
    cache: dict[tuple[tuple[str, str], ...], Project] = {}

    def _generate(**answers: str) -> Project:
        # generate() and generate(worker_class="gthread") are the same project.
        key = tuple(sorted(normalized(answers).items()))
        if key not in cache:
            name = "-".join(f"{k}-{v}" for k, v in sorted(answers.items())) or "defaults"
            output_dir = tmp_path_factory.mktemp(f"gen-{name}")
            path = Path(
                cookiecutter(
                    str(TEMPLATE_ROOT),
                    no_input=True,
                    extra_context=asked_answers(answers),
                    output_dir=str(output_dir),
                    # Ignore a ~/.cookiecutterrc whose default_context would change the answers.
                    default_config=True,
                )
            )
            files = tuple(sorted(p.relative_to(path) for p in path.rglob("*")))
            log_dir = tmp_path_factory.mktemp(f"logs-{name}")
            cache[key] = Project(path=path, answers=dict(answers), log_dir=log_dir, files=files)
        return cache[key]

    return _generate


# Long runs, started when the first test starts (tests/background.py). A test
# marked `background(start=...)` is one: start(generate, background, **its params)
# returns the function its thread runs, and the test reads that function's result.
BACKGROUND = Background(RUNS_AT_ONCE)
# Where the generated projects' own runs record each proof (tests/plugins/proof_record.py).
PLUGINS_DIR = Path(__file__).resolve().parent / "plugins"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "background(start): a long run started with the session, read at its end"
    )
    config.addinivalue_line("markers", "last: runs after every background run's test")


# After pytest's own ordering (which groups tests by their parametrized fixtures).
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Background runs' tests go after the others (they only wait), the `last` ones after them."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("last"):
            return 2
        return 1 if item.get_closest_marker("background") else 0

    items.sort(key=rank)


@pytest.fixture(scope="session")
def proof_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory where each generated project's runs record their proofs."""
    directory = tmp_path_factory.mktemp("proofs")
    proofs.RECORDS.append(directory)
    return directory


@pytest.fixture(scope="session")
def background() -> Background:
    return BACKGROUND


@pytest.fixture(scope="session", autouse=True)
def _start_background_runs(request: pytest.FixtureRequest, generate, proof_records):
    """Start every selected background run, in the order collected, before any test."""
    inner_temproot()  # made once here, not by two threads at once
    for item in request.session.items:
        marker = item.get_closest_marker("background")
        if marker and not BACKGROUND.started(item.nodeid):
            params = getattr(item, "callspec", None)
            run = marker.kwargs["start"](generate, BACKGROUND, **(params.params if params else {}))
            BACKGROUND.start(item.nodeid, run)
    yield
    BACKGROUND.close()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    proofs.note_duration(report)


def pytest_terminal_summary(terminalreporter) -> None:
    proofs.print_tables(terminalreporter)
