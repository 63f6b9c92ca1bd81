"""Every generated project's locks are complete, consistent, and match what it declares.

A project's requirements/dev.txt (what `make install` installs) and
requirements/main.txt (what the image installs) are uv's universal locks, one
pair per framework x worker class in templates/locks/, which the generated
files include. Both are installed with pip's --require-hashes, so an unpinned
or unhashed dependency cannot install. Proven here, in seconds: each pair is
exactly what the project's own `make lock` resolves again from its
pyproject.toml (a range edited without `make lock` fails), every line is an
exact pin with hashes, and the two files agree on every version they share.
Each check is also shown to fail on a lock that is wrong. That each project
really installs from its lock is tests/test_generated.py's `make install`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (
    TEMPLATE_ROOT,
    TOOLS_BIN,
    Project,
    check,
    chosen_answers,
    clean_env,
    supported_combinations,
)

LOCKS_DIR = TEMPLATE_ROOT / "templates" / "locks"
LOCK_FILES = ("dev.txt", "main.txt")
UV = TOOLS_BIN / "uv"
# Shared with the template's `make lock`: a second run downloads nothing it has.
UV_CACHE_DIR = TEMPLATE_ROOT / "build" / "uv-cache"
# One requirement of a lock, its continuation lines joined: name==version, an
# optional environment marker, then one or more hashes.
PIN = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)"
    r"(?:\s*;\s*(?P<marker>[^\\-][^\\]*?))?"
    r"(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64})+)"
)
COMBINATION_IDS = [f"{framework}-{worker}" for framework, worker in supported_combinations()]


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str
    hashes: frozenset[str]


def parse_lock(text: str) -> tuple[list[Pin], list[str]]:
    """The pins of a lock, and every requirement line that is not a hashed exact pin."""
    pins, bad = [], []
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.fullmatch(line)
        if match is None:
            bad.append(line)
            continue
        pins.append(
            Pin(
                name=re.sub(r"[-_.]+", "-", match["name"]).lower(),
                version=match["version"],
                marker=(match["marker"] or "").strip(),
                hashes=frozenset(re.findall(r"sha256:([0-9a-f]{64})", match["hashes"])),
            )
        )
    return pins, bad


def disagreements(main: list[Pin], dev: list[Pin]) -> list[str]:
    """Where main.txt pins a version, or hashes, that dev.txt does not have."""
    in_dev = {(pin.name, pin.version): pin.hashes for pin in dev}
    found = []
    for pin in main:
        if (pin.name, pin.version) not in in_dev:
            found.append(f"{pin.name}=={pin.version} is in main.txt, not in dev.txt")
        elif in_dev[pin.name, pin.version] != pin.hashes:
            found.append(f"{pin.name}=={pin.version} has other hashes in main.txt")
    return found


def drift(locked: list[Pin], resolved: list[Pin]) -> list[str]:
    """What a fresh resolution changes in a lock.

    Pins (name, version, marker) must be the same. A lock's hashes must all be
    among those the index serves now; the index may have gained files since (a
    wheel for a new Python), which does not make the lock wrong.
    """
    old = {(p.name, p.version, p.marker): p.hashes for p in locked}
    new = {(p.name, p.version, p.marker): p.hashes for p in resolved}
    found = [f"dropped or changed: {n}=={v} {m}".rstrip() for n, v, m in sorted(old.keys() - new)]
    found += [f"added or changed: {n}=={v} {m}".rstrip() for n, v, m in sorted(new.keys() - old)]
    found += [
        f"{name}=={version}: hashes the index does not serve"
        for (name, version, marker), hashes in sorted(old.items())
        if (name, version, marker) in new and not hashes <= new[name, version, marker]
    ]
    return found


def read_lock(path: Path) -> list[Pin]:
    pins, bad = parse_lock(path.read_text(encoding="utf-8"))
    assert not bad, f"{path}: not exact pins with hashes: {bad}"
    assert pins, f"{path} pins nothing (run `make lock` at the template's root)"
    return pins


def uv_env() -> dict[str, str]:
    if not UV.is_file():
        pytest.fail(f"{UV} is missing: `make venv` installs uv (requirements-dev.txt)")
    return clean_env(UV_CACHE_DIR=str(UV_CACHE_DIR))


def copy_for_locking(project: Project, workdir: Path, *, edit=None) -> Path:
    """Copy what `make lock` reads and writes: the project itself is shared with other
    tests and left alone. The copied locks are uv's preferences, as in the project.
    `edit` may change the copied pyproject.toml."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("Makefile", "pyproject.toml", "requirements"):
        source = project.path / name
        if source.is_dir():
            shutil.copytree(source, workdir / name)
        else:
            shutil.copy2(source, workdir / name)
    if edit is not None:
        pyproject = workdir / "pyproject.toml"
        pyproject.write_text(edit(pyproject.read_text(encoding="utf-8")), encoding="utf-8")
    return workdir


def make_lock(workdir: Path, target: str = "lock") -> subprocess.CompletedProcess[str]:
    """The project's own `make lock` (or lock-check), with this venv's uv."""
    return subprocess.run(
        ["make", target, f"UV={UV}"],
        cwd=workdir,
        env=uv_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def relock(project: Project, workdir: Path, *, edit=None) -> Path:
    """The requirements/ that the project's `make lock` writes (on a copy)."""
    check(make_lock(copy_for_locking(project, workdir, edit=edit)), "make lock")
    return workdir / "requirements"


@pytest.fixture(params=supported_combinations(), ids=COMBINATION_IDS)
def project(request, generate) -> Project:
    framework, worker_class = request.param
    return generate(framework=framework, worker_class=worker_class)


def test_every_supported_combination_and_only_those_has_locks():
    present = sorted(p.name for p in LOCKS_DIR.iterdir() if p.is_dir())
    assert present == sorted(COMBINATION_IDS)
    for combination in COMBINATION_IDS:
        assert sorted(p.name for p in (LOCKS_DIR / combination).iterdir()) == sorted(LOCK_FILES)


def test_the_project_carries_its_combinations_locks_verbatim(project):
    # Not project.answers: generate() caches a project under its normalized answers,
    # so the defaults' project may come back with the answers it was first asked with ({}).
    answers = chosen_answers(project)
    combination = f"{answers['framework']}-{answers['worker_class']}"
    for name in LOCK_FILES:
        generated = (project.path / "requirements" / name).read_bytes()
        assert generated == (LOCKS_DIR / combination / name).read_bytes(), name


def test_every_requirement_is_an_exact_pin_with_hashes(project):
    for name in LOCK_FILES:
        text = (project.path / "requirements" / name).read_text(encoding="utf-8")
        # uv's header, with the command that refreshes it, tells tools such as Dependabot
        # that this is a lock uv compiled.
        assert text.startswith("# This file was autogenerated by uv"), name
        assert "#    make lock\n" in text, name
        read_lock(project.path / "requirements" / name)


def test_main_and_dev_agree_on_every_version_they_share(project):
    main = read_lock(project.path / "requirements" / "main.txt")
    dev = read_lock(project.path / "requirements" / "dev.txt")
    assert not disagreements(main, dev)
    # The image runs gunicorn; dev.txt adds the tools.
    assert "gunicorn" in {pin.name for pin in main}
    assert {"pytest", "ruff", "uv"} <= {pin.name for pin in dev}


def test_the_lock_is_what_make_lock_resolves_from_pyproject(project, tmp_path):
    relocked = relock(project, tmp_path)
    for name in LOCK_FILES:
        found = drift(read_lock(project.path / "requirements" / name), read_lock(relocked / name))
        assert not found, (
            f"requirements/{name} does not match pyproject.toml (run `make lock` at the "
            f"template's root): {found}"
        )


def test_the_projects_own_lock_check_passes(generate, tmp_path):
    project = generate(framework="flask", worker_class="gthread")
    check(make_lock(copy_for_locking(project, tmp_path), "lock-check"), "make lock-check")


# Teeth: each check above fails on the lock it guards against.


def test_a_range_edited_without_make_lock_is_caught(generate, tmp_path):
    project = generate(framework="flask", worker_class="gthread")
    locked = read_lock(project.path / "requirements" / "main.txt")
    (filelock,) = (pin.version for pin in locked if pin.name == "filelock")
    declared = '"filelock>=4.2,<5"'

    def exclude_the_locked_filelock(text: str) -> str:
        assert declared in text, f"pyproject.toml no longer declares {declared}"
        return text.replace(declared, f'"filelock>=4.2,<{filelock}"')

    stale = copy_for_locking(project, tmp_path / "stale", edit=exclude_the_locked_filelock)
    # The project's own check, for its CI, fails too.
    result = make_lock(stale, "lock-check")
    assert result.returncode != 0, "make lock-check passed a stale lock"
    assert f"filelock=={filelock}" in result.stdout, result.stdout

    relocked = relock(project, tmp_path / "relocked", edit=exclude_the_locked_filelock)
    found = drift(locked, read_lock(relocked / "main.txt"))
    assert any(f"filelock=={filelock}" in line for line in found), found


def test_unpinned_or_unhashed_lines_are_caught():
    digest = "0" * 64
    pins, bad = parse_lock(
        f"flask==3.1.3 \\\n    --hash=sha256:{digest}\n"
        f"redis>=5 \\\n    --hash=sha256:{digest}\n"
        "gunicorn==27.0.1\n"
        f"colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:{digest}\n"
    )
    assert [(p.name, p.marker) for p in pins] == [
        ("flask", ""),
        ("colorama", "sys_platform == 'win32'"),
    ]
    assert bad == [f"redis>=5 --hash=sha256:{digest}", "gunicorn==27.0.1"]


def test_main_and_dev_disagreeing_is_caught():
    dev = [Pin("redis", "8.1.0", "", frozenset({"a"})), Pin("flask", "3.1.3", "", frozenset())]
    main = [Pin("redis", "8.0.0", "", frozenset({"a"})), Pin("flask", "3.1.3", "", frozenset("b"))]
    assert disagreements(main, dev) == [
        "redis==8.0.0 is in main.txt, not in dev.txt",
        "flask==3.1.3 has other hashes in main.txt",
    ]


def test_pip_refuses_a_lock_missing_a_dependency(generate, tmp_path):
    """Why the locks are installed with --require-hashes: a lock that lost a
    dependency (flask without werkzeug) fails to install instead of fetching it."""
    project = generate(framework="flask", worker_class="gthread")
    main = read_lock(project.path / "requirements" / "main.txt")
    (flask,) = (pin for pin in main if pin.name == "flask")
    partial = tmp_path / "partial.txt"
    hashes = " ".join(f"--hash=sha256:{digest}" for digest in sorted(flask.hashes))
    partial.write_text(f"flask=={flask.version} {hashes}\n", encoding="utf-8")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes"),
            *("--dest", str(tmp_path / "downloads"), "--requirement", str(partial)),
        ],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0, "pip installed a lock that lacks flask's dependencies"
    assert "In --require-hashes mode" in result.stderr, result.stderr
