"""A generated project carries its own CI, hooks and update configuration, and they hold.

For each framework's default project: the workflow passes GitHub's workflow
schema and actionlint, dependabot.yml passes its schema, pre-commit accepts
the hook config, and `make check` (every pre-commit hook on every file) passes
in a fresh git repository of the project. Each check also fails on a copy
broken the way a person would break it, so a check that passes everything is
caught. The static checks take a second each; `make check` reuses the
project's venv (`make install`, shared with the other tests).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import TOOLS_BIN, Project, check, clean_env, questions, run_logged

WORKFLOW = Path(".github/workflows/ci.yml")
DEPENDABOT = Path(".github/dependabot.yml")
PRE_COMMIT_CONFIG = Path(".pre-commit-config.yaml")
# What the workflow must run: the three targets, the hooks, and the lock's check.
REQUIRED_TARGETS = ("make lint", "make check", "make lock-check", "make test", "make test-compose")
MAKE_CHECK_TIMEOUT = 300


@pytest.fixture(scope="module", params=questions()["framework"])
def project(request, generate) -> Project:
    return generate(framework=request.param)


def tool(name: str) -> Path:
    path = TOOLS_BIN / name
    assert path.is_file(), (
        f"{name} is not in {TOOLS_BIN}; `make venv` installs requirements-dev.txt"
    )
    return path


def broken_copy(project: Project, relative: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of one project file with one change; the change must apply."""
    text = (project.path / relative).read_text(encoding="utf-8")
    assert old in text, f"{relative} no longer contains {old!r}; update this test's breakage"
    broken = tmp_path / relative
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    return broken


def test_workflow_passes_githubs_workflow_schema(project, tmp_path):
    schema = ("--builtin-schema", "vendor.github-workflows")
    check(project.run(tool("check-jsonschema"), *schema, WORKFLOW), "check-jsonschema")
    # Teeth: a misspelt key (timeout-minute) is refused.
    broken = broken_copy(project, WORKFLOW, tmp_path, "timeout-minutes:", "timeout-minute:")
    assert project.run(tool("check-jsonschema"), *schema, broken).returncode != 0


def test_workflow_passes_actionlint(project, tmp_path):
    check(project.run(tool("actionlint"), WORKFLOW), "actionlint")
    # Teeth: an expression naming a context that does not exist passes the schema
    # (it is only a string there) but not actionlint.
    broken = broken_copy(project, WORKFLOW, tmp_path, "github.ref }}", "github.reff }}")
    result = project.run(tool("actionlint"), broken)
    assert result.returncode != 0 and "reff" in result.stdout, result.stdout + result.stderr


def test_workflow_runs_the_projects_own_targets_with_least_privilege(project):
    workflow = yaml.safe_load((project.path / WORKFLOW).read_text(encoding="utf-8"))
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    # PyYAML reads the key `on` as True (YAML 1.1).
    assert set(workflow[True]) == {"push", "pull_request"}
    runs = []
    for name, job in workflow["jobs"].items():
        assert job.get("timeout-minutes"), f"job {name} has no timeout"
        steps = job["steps"]
        setup = [s for s in steps if s.get("uses", "").startswith("actions/setup-python@")]
        assert setup and setup[0]["with"]["python-version"] == "3.11", name
        # The pip cache is keyed on the locks and pyproject.toml.
        keys = setup[0]["with"]["cache-dependency-path"].split()
        assert setup[0]["with"]["cache"] == "pip" and "requirements/*.txt" in keys, name
        runs += [s["run"] for s in steps if "run" in s]
    for target in REQUIRED_TARGETS:
        assert target in runs, f"the workflow never runs {target}"
    makefile = (project.path / "Makefile").read_text(encoding="utf-8")
    for target in REQUIRED_TARGETS:
        assert f"\n{target.split()[1]}:" in makefile, f"the Makefile has no {target}"


def test_dependabot_config_passes_its_schema(project, tmp_path):
    schema = ("--builtin-schema", "vendor.dependabot")
    check(project.run(tool("check-jsonschema"), *schema, DEPENDABOT), "check-jsonschema")
    config = yaml.safe_load((project.path / DEPENDABOT).read_text(encoding="utf-8"))
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    assert ecosystems == {"pip", "docker", "docker-compose", "github-actions"}
    # Teeth: an interval Dependabot does not know is refused.
    broken = broken_copy(project, DEPENDABOT, tmp_path, "interval: weekly", "interval: hourly")
    assert project.run(tool("check-jsonschema"), *schema, broken).returncode != 0


def test_pre_commit_config_is_valid_and_clones_nothing(project, tmp_path):
    check(project.run(tool("pre-commit"), "validate-config", PRE_COMMIT_CONFIG), "validate")
    config = yaml.safe_load((project.path / PRE_COMMIT_CONFIG).read_text(encoding="utf-8"))
    # Every hook is local: pre-commit would clone any other repo from its URL.
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    hooks = {hook["id"]: hook for hook in config["repos"][0]["hooks"]}
    for wanted in ("ruff-check", "ruff-format", "mypy", "hadolint", "compose-spec"):
        assert wanted in hooks, f"no {wanted} hook"
    assert {hook["language"] for hook in hooks.values()} == {"unsupported"}
    # Teeth: a hook without an entry is refused.
    broken = broken_copy(project, PRE_COMMIT_CONFIG, tmp_path, "entry: hadolint\n", "")
    assert project.run(tool("pre-commit"), "validate-config", broken).returncode != 0


@pytest.fixture(scope="module")
def git_copy(project, tmp_path_factory) -> Path:
    """The project as generated, in a git repository of its own (pre-commit checks
    what git tracks); the project itself stays as the other tests expect it."""
    project.install()
    repo = tmp_path_factory.mktemp("git") / project.path.name
    shutil.copytree(
        project.path, repo, symlinks=True, ignore=shutil.ignore_patterns(".venv", "var")
    )
    for command in (["git", "init", "-q"], ["git", "add", "-A"]):
        check(subprocess.run(command, cwd=repo, capture_output=True, text=True), command[1])
    return repo


def make_check(repo: Path, project: Project, home: Path, name: str) -> tuple[int, str]:
    """`make check` in the copy, with the project's venv, and its output."""
    log = project.log_dir / f"make-check-{name}.log"
    # A fresh PRE_COMMIT_HOME: nothing cached from another run helps or hinders.
    env = clean_env(PRE_COMMIT_HOME=str(home))
    command = ["make", "check", f"VENV={project.path / '.venv'}"]
    status = run_logged(command, cwd=repo, log=log, env=env, timeout=MAKE_CHECK_TIMEOUT)
    return status, log.read_text(encoding="utf-8", errors="replace")


def hook_names(project: Project) -> list[str]:
    config = yaml.safe_load((project.path / PRE_COMMIT_CONFIG).read_text(encoding="utf-8"))
    return [hook["name"] for repo in config["repos"] for hook in repo["hooks"]]


def test_every_pre_commit_hook_passes_on_the_generated_project(project, git_copy, tmp_path):
    status, output = make_check(git_copy, project, tmp_path / "pre-commit", "clean")
    assert status == 0, output
    # Every hook ran and passed (one whose files matched nothing would say "Skipped").
    passed = [line for line in output.splitlines() if line.endswith("Passed")]
    assert len(passed) == len(hook_names(project)), output
    for name in hook_names(project):
        assert any(line.startswith(name + ".") for line in passed), f"{name} did not pass"


def test_make_check_fails_on_a_badly_formatted_file(project, git_copy, tmp_path):
    badly = git_copy / "src" / project.package_name / "badly_formatted.py"
    badly.write_text("x = {  'a':1 }\n", encoding="utf-8")
    try:
        subprocess.run(["git", "add", str(badly)], cwd=git_copy, check=True)
        status, output = make_check(git_copy, project, tmp_path / "pre-commit", "badly")
    finally:
        subprocess.run(["git", "rm", "-qf", str(badly)], cwd=git_copy, check=True)
    assert status != 0, output
    assert "ruff format --check" in output and "Failed" in output, output
