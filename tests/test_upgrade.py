"""A generated project takes the template's later changes with `cruft update`, keeping its own.

The test makes a git history of the template: an older commit (today's
template with three deliberate differences: a README paragraph missing, a unit
test not yet written, a file since retired) and the current one. Each
framework's project is generated from the older commit with plain cookiecutter,
as the template's README shows, committed to a repository of its own, changed
locally, and updated with `cruft update`. The updated project must then be,
file for file, the project tests/test_generated.py runs its whole `make test`
on, plus the local changes: that run is the proof it works, at no extra cost.
Everything runs on local paths; nothing reaches the network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (
    TEMPLATE_DIR,
    TEMPLATE_ROOT,
    TOOLS_BIN,
    Project,
    check,
    questions,
    run_as_tester,
)

CRUFT = TOOLS_BIN / "cruft"
COOKIECUTTER = TOOLS_BIN / "cookiecutter"
# What a template is made of; the rest of this repository (tests, build/) is not.
TEMPLATE_PARTS = ("cookiecutter.json", "hooks", "templates", TEMPLATE_DIR.name)
# Each framework with its default worker class, the first the table lists.
FRAMEWORKS = questions()["framework"]
DEFAULT_WORKER = {f: questions()["_worker_classes_by_framework"][f][0] for f in FRAMEWORKS}

# The older commit's differences, relative to the generated project.
README = "README.md"
NEW_PARAGRAPH_START = "`.cruft.json` records"
NEW_FILE = "tests/unit/test_http_errors.py"
RETIRED_FILE = "docs/retired-notes.md"
# Random secrets: drawn anew at each rendering, so `[tool.cruft] skip` keeps the project's own.
SKIPPED_FILE = ".env"

# The team's own changes, far from the template's in the same README and in a source file.
LOCAL_README_LINE = "Run by the payments team; ask in #payments before changing the locks."
LOCAL_ROUTES_LINE = "# Local: the payments routes are mounted from payments.py."
# Appended below the module's last function, so two blank lines first (ruff format).
LOCAL_ROUTES_TEXT = f"\n\n{LOCAL_ROUTES_LINE}\n"


def require_tools() -> None:
    assert shutil.which("git"), "git is not installed; cruft needs it (apt-get install git)"
    assert CRUFT.is_file(), f"{CRUFT} is missing; `make venv` installs requirements-dev.txt"


def run(*command: str | Path, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return run_as_tester(*command, cwd=cwd, timeout=timeout)


def git(cwd: Path, *args: str) -> str:
    result = run("git", *args, cwd=cwd)
    check(result, f"git {' '.join(args)}")
    return result.stdout.strip()


def in_a_shell(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command as a person's shell does, with PWD naming `cwd`: bash sets
    it on start, and the hook resolves a relative template path against it."""
    return run("bash", "-c", 'exec "$@"', "bash", *command, cwd=cwd)


def copy_template(destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns(
        "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "*.egg-info"
    )
    for part in TEMPLATE_PARTS:
        source = TEMPLATE_ROOT / part
        if source.is_dir():
            shutil.copytree(source, destination / part, ignore=ignore)
        else:
            shutil.copy2(source, destination / part)


def without_new_paragraph(readme: str) -> str:
    paragraphs = readme.split("\n\n")
    kept = [p for p in paragraphs if not p.startswith(NEW_PARAGRAPH_START)]
    assert len(kept) == len(paragraphs) - 1, (
        f"the generated README has no paragraph starting {NEW_PARAGRAPH_START!r} to remove"
    )
    return "\n\n".join(kept)


@dataclass(frozen=True)
class History:
    """A template repository with two commits, the older first."""

    repo: Path
    old: str
    new: str


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> History:
    require_tools()
    repo = tmp_path_factory.mktemp("template-history")
    copy_template(repo)
    git(repo, "init", "--quiet", "--initial-branch=main")
    project_dir = repo / TEMPLATE_DIR.name
    readme = project_dir / README
    current_readme = readme.read_text(encoding="utf-8")
    new_file = project_dir / NEW_FILE
    new_file_text = new_file.read_text(encoding="utf-8")

    # The older state.
    readme.write_text(without_new_paragraph(current_readme), encoding="utf-8")
    new_file.unlink()
    retired = project_dir / RETIRED_FILE
    retired.parent.mkdir()
    retired.write_text("Notes the template once shipped and has since removed.\n", "utf-8")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "The older template")
    old = git(repo, "rev-parse", "HEAD")

    # Today's template, exactly.
    readme.write_text(current_readme, encoding="utf-8")
    new_file.write_text(new_file_text, encoding="utf-8")
    shutil.rmtree(retired.parent)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "Today's template")
    return History(repo=repo, old=old, new=git(repo, "rev-parse", "HEAD"))


def checkout_at_old(history: History, where: Path) -> Path:
    """A team's clone of the template, at the older commit."""
    clone = where / "multiworker-template"
    git(where, "clone", "--quiet", str(history.repo), clone.name)
    git(clone, "reset", "--quiet", "--hard", history.old)
    return clone


def generate_with_cookiecutter(template: Path, framework: str, output: Path) -> Path:
    """`cookiecutter --no-input ../multiworker-template framework=...`, from a shell."""
    result = in_a_shell(
        COOKIECUTTER,
        "--no-input",
        "--default-config",
        "--output-dir",
        output,
        Path("..") / template.name,
        f"framework={framework}",
        cwd=template.parent / "work",
    )
    check(result, "cookiecutter")
    (project,) = output.iterdir()
    return project


def commit_all(project: Path, message: str) -> None:
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", message)


def cruft_record(project: Path) -> dict:
    return json.loads((project / ".cruft.json").read_text(encoding="utf-8"))


def routes_file(project: Path) -> Path:
    (routes,) = project.glob("src/*/routes.py")
    return routes


def project_files(root: Path, relative: list[Path] | tuple[Path, ...]) -> dict[str, bytes]:
    return {
        p.as_posix(): (root / p).read_bytes()
        for p in relative
        if (root / p).is_file() and p.parts[0] != ".git"
    }


@dataclass(frozen=True)
class Updated:
    project: Path
    history: History
    dot_env_before: bytes
    update: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module", params=FRAMEWORKS)
def updated(request, history, tmp_path_factory) -> Updated:
    """A project generated at the older commit, changed locally, then `cruft update`d."""
    framework = request.param
    where = tmp_path_factory.mktemp(f"upgrade-{framework}")
    (where / "work").mkdir()
    template = checkout_at_old(history, where)
    project = generate_with_cookiecutter(template, framework, where / "projects")
    assert cruft_record(project)["commit"] == history.old, "the project records another commit"

    git(project, "init", "--quiet", "--initial-branch=main")
    commit_all(project, "Generated from the template")
    with (project / README).open("a", encoding="utf-8") as readme:
        readme.write(f"\n{LOCAL_README_LINE}\n")
    with routes_file(project).open("a", encoding="utf-8") as routes:
        routes.write(LOCAL_ROUTES_TEXT)
    commit_all(project, "The team's own changes")
    dot_env_before = (project / SKIPPED_FILE).read_bytes()

    # The team pulls the template's new commit into its clone, then updates.
    git(template, "merge", "--quiet", "--ff-only", "origin/main")
    result = run(CRUFT, "update", "--skip-apply-ask", cwd=project)
    check(result, "cruft update")
    return Updated(project, history, dot_env_before, result)


def test_the_update_applies_without_conflicts(updated):
    rejected = sorted(p.relative_to(updated.project) for p in updated.project.rglob("*.rej"))
    assert not rejected, f"cruft update rejected hunks: {rejected}\n{updated.update.stderr}"
    unmerged = git(updated.project, "diff", "--name-only", "--diff-filter=U")
    assert not unmerged, f"cruft update left conflicts in: {unmerged}"
    assert "Good work" in updated.update.stdout, updated.update.stdout + updated.update.stderr


def test_the_templates_changes_arrive(updated):
    project = updated.project
    assert NEW_PARAGRAPH_START in (project / README).read_text(encoding="utf-8")
    assert (project / NEW_FILE).is_file(), "the template's new file did not arrive"
    assert not (project / RETIRED_FILE).exists(), "the file the template retired is still there"
    assert not (project / Path(RETIRED_FILE).parent).exists()
    assert cruft_record(project)["commit"] == updated.history.new


def test_the_local_changes_are_kept(updated):
    project = updated.project
    assert (project / README).read_text(encoding="utf-8").endswith(f"\n{LOCAL_README_LINE}\n")
    assert routes_file(project).read_text(encoding="utf-8").endswith(LOCAL_ROUTES_TEXT)
    assert (project / SKIPPED_FILE).read_bytes() == updated.dot_env_before, (
        f"{SKIPPED_FILE} is in [tool.cruft] skip: its secrets are the project's own"
    )


def test_cruft_check_passes_after_the_update(updated):
    result = run(CRUFT, "check", cwd=updated.project)
    check(result, "cruft check")


def test_cruft_check_fails_before_the_update(history, tmp_path):
    # The other side of the check above: it tells an out-of-date project apart.
    (tmp_path / "work").mkdir()
    template = checkout_at_old(history, tmp_path)
    project = generate_with_cookiecutter(template, FRAMEWORKS[0], tmp_path / "projects")
    git(template, "merge", "--quiet", "--ff-only", "origin/main")
    result = run(CRUFT, "check", cwd=project)
    assert result.returncode != 0, result.stdout
    assert "out of date" in result.stdout, result.stdout


def test_the_updated_project_is_the_one_whose_make_test_passes(updated, generate):
    # tests/test_generated.py runs the whole `make test` (and lint) on generate()'s
    # project for these answers; equal files mean that run proves this one too.
    framework = cruft_record(updated.project)["context"]["cookiecutter"]["framework"]
    reference: Project = generate(framework=framework, worker_class=DEFAULT_WORKER[framework])
    ours = sorted(p.relative_to(updated.project) for p in updated.project.rglob("*"))
    expected = project_files(reference.path, reference.files)
    found = project_files(updated.project, ours)
    # Each project's own: its record (the commit differs) and its random secrets.
    for name in (".cruft.json", SKIPPED_FILE):
        expected.pop(name, None)
        found.pop(name, None)
    expected[README] += f"\n{LOCAL_README_LINE}\n".encode()
    routes = routes_file(updated.project).relative_to(updated.project).as_posix()
    expected[routes] += LOCAL_ROUTES_TEXT.encode()
    assert sorted(found) == sorted(expected), sorted(set(found) ^ set(expected))
    differing = [name for name in expected if found[name] != expected[name]]
    assert not differing, f"the updated project differs from a fresh one in {differing}"


def test_the_updated_project_passes_ruff(updated):
    # The local changes are the only lines test_generated did not lint.
    for command in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        result = run(sys.executable, "-m", "ruff", *command, cwd=updated.project)
        check(result, f"ruff {command[0]}")


def update_over_a_conflicting_edit(
    history: History, tmp_path: Path, *, in_git: bool
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A project whose README has a line of the team's where the template adds a paragraph."""
    (tmp_path / "work").mkdir()
    template = checkout_at_old(history, tmp_path)
    project = generate_with_cookiecutter(template, FRAMEWORKS[0], tmp_path / "projects")
    if in_git:
        git(project, "init", "--quiet", "--initial-branch=main")
        commit_all(project, "Generated from the template")
    readme = project / README
    text = readme.read_text(encoding="utf-8")
    heading = "\n## Three ways to run it\n"
    assert heading in text
    readme.write_text(text.replace(heading, f"\n{LOCAL_README_LINE}\n{heading}"), "utf-8")
    if in_git:
        commit_all(project, "The team's own intro")
    git(template, "merge", "--quiet", "--ff-only", "origin/main")
    result = run(CRUFT, "update", "--skip-apply-ask", cwd=project)
    check(result, "cruft update")
    # The changes that did not conflict are applied all the same.
    assert (project / NEW_FILE).is_file(), result.stdout + result.stderr
    return project, result


def test_a_conflicting_edit_in_git_is_a_merge_conflict_to_resolve(history, tmp_path):
    # The project's history holds the file as generated, so git merges three
    # ways: the file is left unmerged, both sides between conflict markers.
    project, result = update_over_a_conflicting_edit(history, tmp_path, in_git=True)
    assert git(project, "diff", "--name-only", "--diff-filter=U") == README, result.stderr
    merged = (project / README).read_text(encoding="utf-8")
    assert "<<<<<<<" in merged, merged
    assert LOCAL_README_LINE in merged
    assert NEW_PARAGRAPH_START in merged


def test_a_conflicting_edit_outside_git_leaves_a_rej_file(history, tmp_path):
    # With no history to merge from, the team's text stays and the template's
    # hunk waits in README.md.rej.
    project, result = update_over_a_conflicting_edit(history, tmp_path, in_git=False)
    assert (project / f"{README}.rej").is_file(), result.stdout + result.stderr
    assert NEW_PARAGRAPH_START in (project / f"{README}.rej").read_text(encoding="utf-8")
    kept = (project / README).read_text(encoding="utf-8")
    assert LOCAL_README_LINE in kept
    assert NEW_PARAGRAPH_START not in kept


def test_cruft_create_records_what_plain_cookiecutter_records(history, tmp_path):
    # The same template and answers, made either way, give the same record, so
    # `cruft check` and `cruft update` treat both projects alike.
    (tmp_path / "work").mkdir()
    template = checkout_at_old(history, tmp_path)
    made_by_cookiecutter = generate_with_cookiecutter(template, "django", tmp_path / "plain")
    result = in_a_shell(
        CRUFT,
        "create",
        "--no-input",
        "--default-config",
        "--output-dir",
        tmp_path / "cruft",
        "--extra-context",
        json.dumps({"framework": "django"}),
        template,
        cwd=tmp_path / "work",
    )
    check(result, "cruft create")
    (made_by_cruft,) = (tmp_path / "cruft").iterdir()
    assert cruft_record(made_by_cookiecutter) == cruft_record(made_by_cruft)


def test_a_template_outside_git_records_nothing_and_says_so(tmp_path):
    # An unpacked archive has no commit to record; the person is told, and how to link later.
    template = tmp_path / "unpacked-template"
    copy_template(template)
    (tmp_path / "work").mkdir()
    result = in_a_shell(
        COOKIECUTTER,
        "--no-input",
        "--default-config",
        "--output-dir",
        tmp_path / "projects",
        template,
        cwd=tmp_path / "work",
    )
    check(result, "cookiecutter")
    (project,) = (tmp_path / "projects").iterdir()
    assert not (project / ".cruft.json").exists()
    assert "is not a git repository" in result.stderr, result.stderr
    assert "cruft link" in result.stderr, result.stderr
