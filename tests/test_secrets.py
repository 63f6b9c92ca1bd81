"""Secrets never reach git: each copy of a project draws its own, in a file git ignores.

compose.yaml refuses to start without its secrets (`${NAME:?...}`: the Redis
password, and Django's secret key). The committed .env.example leaves each one
empty, so a copy of it is refused as well; the post-generation hook writes
.env with values drawn at random (the project's scripts/dot_env.py), and
`make .env`, which `make up` and `make test-compose` need, does the same in a
clone, which has no .env. No engine: compose's interpolation is the model in
conftest.py (`docker compose config` agrees: it refuses the example).
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from conftest import (
    TEMPLATE_ROOT,
    Project,
    asked_answers,
    check,
    env_file,
    interpolate,
    questions,
    run_as_tester,
)

# The random part of a drawn secret: 32 bytes, as hex.
DRAWN = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(scope="module", params=questions()["framework"])
def project(request, generate) -> Project:
    return generate(framework=request.param)


def compose_text(root: Path) -> str:
    return (root / "compose.yaml").read_text(encoding="utf-8")


def required_variables(root: Path) -> set[str]:
    """The variables compose refuses to start without: the stack's secrets."""
    names = set(re.findall(r"\$\{(\w+):\?", compose_text(root)))
    assert "REDIS_PASSWORD" in names, names
    return names


def run(*command: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_as_tester(*command, cwd=cwd, timeout=timeout)


def committed(project: Project, repo: Path) -> Path:
    """The project as generated (its .env too), committed with `git add -A` as a team would."""
    shutil.copytree(project.path, repo, ignore=shutil.ignore_patterns(".venv", "var"))
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "gen"]):
        check(run(*command, cwd=repo), " ".join(command))
    return repo


def test_the_committed_project_holds_no_secret_the_stack_uses(project, tmp_path):
    repo = committed(project, tmp_path / "repo")
    tracked = run("git", "ls-files", cwd=repo).stdout.splitlines()
    assert ".env.example" in tracked
    assert ".env" not in tracked, "git would commit .env"
    check(run("git", "check-ignore", "--quiet", ".env", cwd=repo), "git check-ignore .env")
    assert ".env" in (repo / ".dockerignore").read_text(encoding="utf-8").split()

    # What compose would run the stack with: the generated .env, interpolated.
    variables = env_file(repo / ".env")
    used = {name: variables.get(name, "") for name in required_variables(repo)}
    assert all(DRAWN.fullmatch(value) for value in used.values()), used
    configured = interpolate(compose_text(repo), variables)
    for name, value in used.items():
        assert value in configured, f"compose does not use the drawn {name}"

    # No commit holds any of them, in any file (text or binary).
    patterns = [argument for value in used.values() for argument in ("-e", value)]
    found = run("git", "grep", "--fixed-strings", "--name-only", *patterns, "HEAD", cwd=repo)
    assert found.returncode == 1, f"committed files hold the stack's secrets: {found.stdout}"


def test_compose_refuses_a_copy_of_the_example(project):
    # `cp .env.example .env`: every secret is empty there, so compose stops
    # before starting anything, instead of running with a value every clone knows.
    example = env_file(project.path / ".env.example")
    required = required_variables(project.path)
    for name in sorted(required):
        assert example.get(name) == "", f".env.example gives {name} a value: {example.get(name)}"
        # Each one alone is enough for compose to refuse.
        others = {other: "x" * 64 for other in required - {name}}
        with pytest.raises(AssertionError, match="compose would refuse to start"):
            interpolate(compose_text(project.path), {**example, **others})


def test_two_generations_draw_different_secrets(project, tmp_path):
    again = Path(
        cookiecutter(
            str(TEMPLATE_ROOT),
            no_input=True,
            extra_context=asked_answers(project.answers),
            output_dir=str(tmp_path),
            default_config=True,
        )
    )
    required = required_variables(project.path)
    first, second = (env_file(root / ".env") for root in (project.path, again))
    for name in sorted(required):
        assert DRAWN.fullmatch(first[name]) and DRAWN.fullmatch(second[name]), name
        assert first[name] != second[name], f"two generations share {name}"
    assert len({first[name] for name in required}) == len(required), "one value, two secrets"
    # The rest of .env is the example's settings, the same in both.
    assert {k: v for k, v in first.items() if k not in required} == {
        k: v for k, v in second.items() if k not in required
    }
    for root in (project.path, again):
        mode = stat.S_IMODE((root / ".env").stat().st_mode)
        assert mode == 0o600, f"{root / '.env'} is readable by others: {oct(mode)}"


def make(target: str, cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run("make", *flags, target, cwd=cwd)


def test_a_clone_without_dot_env_gets_its_own_from_make(project, tmp_path):
    repo = committed(project, tmp_path / "repo")
    clone = tmp_path / "clone"
    check(run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path), "git clone")
    assert not (clone / ".env").exists(), "the clone has a .env git should not have held"

    # `make up` and `make test-compose` write .env before compose reads it (dry runs:
    # the commands make would run, in order; no engine here).
    for target in ("up", "test-compose"):
        planned = make(target, clone, "--dry-run")
        check(planned, f"make --dry-run {target}")
        lines = planned.stdout.splitlines()
        writes = lines.index("python3 scripts/dot_env.py")
        compose_up = next(i for i, line in enumerate(lines) if "docker compose up" in line)
        assert writes < compose_up, planned.stdout

    check(make(".env", clone), "make .env")
    made = env_file(clone / ".env")
    ours = env_file(repo / ".env")
    example = env_file(clone / ".env.example")
    required = required_variables(clone)
    for name in sorted(required):
        assert DRAWN.fullmatch(made[name]), (name, made[name])
        assert made[name] != ours[name], f"the clone's {name} is the generated project's"
    assert {k: v for k, v in made.items() if k not in required} == {
        k: v for k, v in example.items() if k not in required
    }
    interpolate(compose_text(clone), made)  # compose would start with it
    assert stat.S_IMODE((clone / ".env").stat().st_mode) == 0o600
    assert run("git", "status", "--porcelain", cwd=clone).stdout == "", "git sees .env"

    # Made once: its secrets are in use, so make never draws new ones over them.
    text = (clone / ".env").read_text(encoding="utf-8")
    check(make(".env", clone), "make .env, again")
    planned = make("up", clone, "--dry-run")
    assert "dot_env.py" not in planned.stdout, planned.stdout
    assert (clone / ".env").read_text(encoding="utf-8") == text


def test_dot_env_refuses_an_example_that_holds_a_secret(project, tmp_path):
    # The guard on the committed file: a value typed into it is refused, not copied.
    (tmp_path / "scripts").mkdir()
    shutil.copy(project.path / "scripts" / "dot_env.py", tmp_path / "scripts")
    example = (project.path / ".env.example").read_text(encoding="utf-8")
    assert "\nREDIS_PASSWORD=\n" in example
    leaked = example.replace("\nREDIS_PASSWORD=\n", "\nREDIS_PASSWORD=hunter2hunter2\n")
    (tmp_path / ".env.example").write_text(leaked, encoding="utf-8")
    result = run("python3", "scripts/dot_env.py", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        ".env.example gives the secret REDIS_PASSWORD a value, which every clone of the "
        "repository would know; leave it empty there."
    ]
    assert not (tmp_path / ".env").exists()
