"""The integration proofs have teeth: each fails against the naive code it guards against.

Each framework's generated project, with that framework's default worker class
(the first of cookiecutter.json's table: gthread for Flask and Django, aiohttp's
own worker for aiohttp), runs its own integration files against
tests/naive/naive_app.py, which is the real service with one function swapped
for the mistake teams really make. pytest must report failed tests (exit 1):
passing would mean the proof proves nothing, and an error or a collection
problem (exit 2 to 5) would mean it never ran.
"""

from __future__ import annotations

import re

import pytest

import proofs
from background import Background, Outcome
from conftest import TEMPLATE_ROOT, clean_env, default_worker_class, log_tail, questions

NAIVE_DIR = TEMPLATE_ROOT / "tests" / "naive"
# pytest's exit status when tests ran and some failed.
TESTS_FAILED = 1
TEETH_TIMEOUT = 600


# The app gunicorn loads normally, per framework; naive_app swaps one handler, then loads it.
REAL_APPS = {
    # A factory, called by gunicorn (and naive_app) in each worker.
    "flask": "{package}.flask_app:create_app()",
    "django": "{package}.django_project.wsgi:application",
    # An async factory, awaited by aiohttp's worker in each worker's own event loop.
    "aiohttp": "{package}.aiohttp_app:create_app",
}
# (framework, variant, the proof it must fail)
CASES = [
    # counters in a module-level dict, one per worker process
    ("flask", "local_counter", "test_shared_counters.py"),
    # the read-modify-write without a cross-process lock
    ("flask", "no_lock", "test_lock_exclusion.py"),
    # every export written to one fixed path
    ("flask", "fixed_path", "test_export_downloads.py"),
    # Django's default cache, LocMemCache: one private copy per process
    ("django", "locmem_counter", "test_shared_counters.py"),
    ("django", "local_counter", "test_shared_counters.py"),
    ("django", "no_lock", "test_lock_exclusion.py"),
    ("django", "fixed_path", "test_export_downloads.py"),
    # aiohttp's app mounts its route tables' handlers: naive_app swaps those
    ("aiohttp", "local_counter", "test_shared_counters.py"),
    ("aiohttp", "no_lock", "test_lock_exclusion.py"),
    ("aiohttp", "fixed_path", "test_export_downloads.py"),
    # a worker whose SIGCHLD handler reaps any child, as gunicorn 23's arbiter left it
    ("aiohttp", "reaping_sigchld", "test_child_processes.py"),
    # a handler that holds its lock with time.sleep, stopping the worker's event loop
    ("aiohttp", "blocking_sleep", "test_event_loop.py"),
    # /metrics from each worker's own registry: each scrape shows one worker's share
    ("flask", "per_process_registry", "test_metrics.py"),
    ("django", "per_process_registry", "test_metrics.py"),
    ("aiohttp", "per_process_registry", "test_metrics.py"),
    # every task's child started at once: no cap on long work per host
    ("flask", "uncapped_tasks", "test_long_work_cap.py"),
    ("django", "uncapped_tasks", "test_long_work_cap.py"),
    ("aiohttp", "uncapped_tasks", "test_long_work_cap.py"),
]


def start_tooth(generate, background: Background, framework: str, variant: str, proof: str):
    """The run of one proof file against one naive variant of the framework's app."""
    project = generate(framework=framework, worker_class=default_worker_class(framework))
    package = project.package_name
    env = clean_env(
        APP_MODULE="naive_app:app",
        NAIVE_VARIANT=variant,
        NAIVE_PACKAGE=package,
        NAIVE_APP=REAL_APPS[framework].format(package=package),
        PYTHONPATH=f"{NAIVE_DIR}:{project.path / 'src'}",
    )

    def run() -> Outcome:
        project.install()
        outcome = background.command(
            [str(project.python), "-m", "pytest", f"tests/integration/{proof}", "-q"],
            cwd=project.path,
            log=project.log_dir / f"teeth-{variant}.log",
            env=env,
            timeout=TEETH_TIMEOUT,
        )
        proofs.note_stage("teeth", outcome.seconds)
        return outcome

    return run


@pytest.mark.parametrize(
    ("framework", "variant", "proof"),
    [case for case in CASES if case[0] in questions()["framework"]],
)
@pytest.mark.background(start=start_tooth)
def test_proof_fails_against_the_naive_app(
    generate, background, request, framework, variant, proof
):
    project = generate(framework=framework, worker_class=default_worker_class(framework))
    proof_path = project.path / "tests" / "integration" / proof
    assert proof_path.is_file(), f"the generated project has no {proof_path.name}"
    assert (NAIVE_DIR / "naive_app.py").is_file(), "tests/naive/naive_app.py is missing"

    outcome = background.result(request.node.nodeid)
    status, log = outcome.status, outcome.log
    assert status == TESTS_FAILED, (
        f"{proof} against NAIVE_VARIANT={variant}: pytest exited {status}, "
        f"expected {TESTS_FAILED} (some tests failed)\n{log_tail(log)}"
    )
    # Exit 1 also covers errors in fixtures (a stack that never started): the
    # summary must show failed tests and no errors.
    summary = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-3:])
    assert re.search(r"\b\d+ failed\b", summary), log_tail(log)
    assert not re.search(r"\b\d+ errors?\b", summary), log_tail(log)
