"""The hooks: refusals are one sentence, and the options table removes what it says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.utils import create_env_with_context

from conftest import (
    OPTIONS_TABLE,
    TEMPLATE_DIR,
    TEMPLATE_ROOT,
    TOOLS_BIN,
    clean_env,
    options_table,
    questions,
    refused_combinations,
    supported_combinations,
)

HOOKS = TEMPLATE_ROOT / "hooks"
DEFAULT_ANSWERS = {
    "project_name": "Multiworker Service",
    "project_slug": "multiworker-service",
    "package_name": "multiworker_service",
    "description": "A web service.",
    "framework": "flask",
    "worker_class": "gthread",
    "__worker_class": "gthread",
    "include_examples": True,
    "_worker_classes_by_framework": questions()["_worker_classes_by_framework"],
}


def run_cookiecutter(tmp_path: Path, *answers: str) -> subprocess.CompletedProcess[str]:
    """The cookiecutter command line, as a person runs it, with no prompts."""
    return subprocess.run(
        [
            str(TOOLS_BIN / "cookiecutter"),
            "--no-input",
            "--default-config",
            "--output-dir",
            str(tmp_path),
            str(TEMPLATE_ROOT),
            *answers,
        ],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], sentence: str, tmp_path: Path):
    assert result.returncode != 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert sentence in output, output
    # cookiecutter itself logs its FailedHookException with a traceback of its own
    # frames; the hook must add none (no frame outside cookiecutter's package).
    frames = re.findall(r'File "([^"]+)"', output)
    foreign = [frame for frame in frames if "/cookiecutter/" not in frame]
    assert not foreign, f"the hook raised instead of refusing:\n{output}"
    assert "SyntaxError" not in output, output
    # A refused project leaves nothing behind.
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "slug", ["Bad Slug!", "a", "-leading-dash", "trailing-dash-", "under_score", "x" * 65]
)
def test_bad_slug_is_refused_with_one_sentence(tmp_path, slug):
    result = run_cookiecutter(tmp_path, f"project_slug={slug}", "package_name=fine_name")
    assert_refused(result, f"project_slug {slug!r} must be 2 to 64 characters", tmp_path)


@pytest.mark.parametrize(
    ("package_name", "reason"),
    [
        ("Bad-Name", "must be lowercase letters, digits and underscores"),
        ("_private", "must be lowercase letters, digits and underscores"),
        ("class", "is a Python keyword"),
        ("json", "would shadow a module"),
        ("test", "would shadow a module"),
        ("stack", "would shadow a module"),
        ("flask", "would shadow a module"),
        ("redis", "would shadow a module"),
        ("gunicorn", "would shadow a module"),
        ("config", "would shadow a module"),
    ],
)
def test_bad_package_name_is_refused_with_one_sentence(tmp_path, package_name, reason):
    result = run_cookiecutter(tmp_path, f"package_name={package_name}")
    assert_refused(result, f"package_name {package_name!r} {reason}", tmp_path)


def test_quotes_in_answers_are_refused_not_crashed_on(tmp_path):
    # The hook receives answers as JSON; quotes must not break the rendered Python.
    name = 'Say "hi" \'\'\'""" \\'
    result = run_cookiecutter(tmp_path, f"project_name={name}", "project_slug=say-hi")
    assert_refused(result, "project_name must be one line of printable text", tmp_path)


def render_template_file(path: Path, answers: dict) -> str:
    """Render a file as cookiecutter does, with answers it would never let through."""
    context = {"cookiecutter": answers}
    template = create_env_with_context(context).from_string(path.read_text(encoding="utf-8"))
    return template.render(**context)


def render_hook(name: str, answers: dict) -> str:
    return render_template_file(HOOKS / name, answers)


def run_rendered_hook(
    tmp_path: Path, name: str, answers: dict, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / f"rendered-{name}"
    script.write_text(render_hook(name, answers), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_impossible_worker_class_for_framework_is_refused(tmp_path):
    # cookiecutter offers only valid choices, but a replay file or a hand-edited
    # .cruft.json reaches the hook unchecked: drive it directly.
    answers = {**DEFAULT_ANSWERS, "worker_class": "aiohttp", "__worker_class": "aiohttp"}
    result = run_rendered_hook(tmp_path, "pre_gen_project.py", answers)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "worker_class 'aiohttp' cannot serve framework 'flask'; "
        "choose one of: gthread, sync, gevent."
    )


def test_every_refused_combination_is_refused_and_every_supported_one_passes(tmp_path):
    # One table (cookiecutter.json's _worker_classes_by_framework) drives the hook
    # and the generation tests; what it leaves out of the choices is refused.
    for framework, worker_class in refused_combinations():
        answers = {**DEFAULT_ANSWERS, "framework": framework, "__worker_class": worker_class}
        result = run_rendered_hook(tmp_path, "pre_gen_project.py", answers)
        assert result.returncode == 1, (framework, worker_class)
        assert f"cannot serve framework {framework!r}" in result.stderr
    for framework, worker_class in supported_combinations():
        answers = {**DEFAULT_ANSWERS, "framework": framework, "__worker_class": worker_class}
        result = run_rendered_hook(tmp_path, "pre_gen_project.py", answers)
        assert result.returncode == 0, (framework, worker_class, result.stderr)


def test_the_worker_class_question_offers_each_class_once_and_only_wsgi_ones():
    # cookiecutter has no choice that depends on another (cookiecutter issue 1744):
    # the question lists the Flask and Django classes, each once.
    table = questions()["_worker_classes_by_framework"]
    asked = questions()["worker_class"]
    assert sorted(asked) == sorted(set(asked)) == sorted(set(table["flask"]) | set(table["django"]))


def test_aiohttp_runs_its_own_worker_whatever_the_worker_class_answer(tmp_path):
    result = run_cookiecutter(tmp_path, "framework=aiohttp", "worker_class=gevent")
    assert result.returncode == 0, result.stderr
    project = tmp_path / "multiworker-service"
    config = (project / "gunicorn.conf.py").read_text(encoding="utf-8")
    assert '_DEFAULT_WORKER_CLASS = "aiohttp.GunicornWebWorker"' in config
    assert "gunicorn[gevent]" not in (project / "pyproject.toml").read_text(encoding="utf-8")


def test_a_worker_class_no_framework_is_offered_is_not_accepted(tmp_path):
    result = run_cookiecutter(tmp_path, "framework=flask", "worker_class=aiohttp")
    assert result.returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_unknown_framework_is_refused(tmp_path):
    answers = {**DEFAULT_ANSWERS, "framework": "bottle"}
    result = run_rendered_hook(tmp_path, "pre_gen_project.py", answers)
    assert result.returncode == 1
    assert "framework 'bottle' is not one this template can generate" in result.stderr


def test_defaults_generate(generate):
    project = generate()
    assert project.path.name == "multiworker-service"
    assert (project.path / "src" / "multiworker_service" / "__init__.py").is_file()
    assert not (project.path / "template-options.toml").exists()


def test_flask_with_gevent_generates(generate):
    project = generate(framework="flask", worker_class="gevent")
    settings = project.resolved_gunicorn_settings()
    assert settings["worker_class"] == "gevent"


def test_every_path_in_the_options_table_exists_in_the_template():
    # A renamed file would otherwise silently stay in projects that don't want it.
    missing = [
        f"[{variable}.{value}] {path}"
        for variable, by_value in options_table().items()
        for value, paths in by_value.items()
        for path in paths
        if not (TEMPLATE_DIR / path).exists()
    ]
    assert not missing, f"{OPTIONS_TABLE.name} lists paths the template lacks: {missing}"


def test_options_table_keys_are_questions_and_choices():
    questions = json.loads((TEMPLATE_ROOT / "cookiecutter.json").read_text())
    for variable, by_value in options_table().items():
        assert variable in questions, variable
        choices = questions[variable]
        allowed = {"true", "false"} if isinstance(choices, bool) else set(choices)
        assert set(by_value) <= allowed, (variable, set(by_value) - allowed)


# --- the post-generation hook on a small project of its own ---------------------

SMALL_TABLE = """\
[worker_class.gthread]
remove_unless = ["threads.py", "shared/either.py"]

[worker_class.gevent]
remove_unless = ["shared/either.py", "green/"]

[include_examples.true]
remove_unless = ["examples/deep/one.py", "examples/deep/two.py", "absent.py"]
"""


# What every project has that the hook uses besides the table: the example of
# .env and the script that writes .env from it, which the hook runs.
DOT_ENV_SCRIPT = "scripts/dot_env.py"
SMALL_EXAMPLE = "# Secret: the Redis password.\nREDIS_PASSWORD=\nHTTP_PORT=8080\n"
ALWAYS_THERE = {".env.example", "scripts", DOT_ENV_SCRIPT}


def small_project(tmp_path: Path, table: str = SMALL_TABLE, example: str = SMALL_EXAMPLE) -> Path:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    (root / DOT_ENV_SCRIPT).write_text(
        render_template_file(TEMPLATE_DIR / DOT_ENV_SCRIPT, DEFAULT_ANSWERS), encoding="utf-8"
    )
    (root / ".env.example").write_text(example, encoding="utf-8")
    for name in [
        "keep.py",
        "threads.py",
        "shared/either.py",
        "shared/other.py",
        "green/a.py",
        "green/b/c.py",
        "examples/deep/one.py",
        "examples/deep/two.py",
    ]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("", encoding="utf-8")
    (root / "template-options.toml").write_text(table, encoding="utf-8")
    return root


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_post_gen_removes_what_unchosen_answers_own(tmp_path):
    root = small_project(tmp_path)
    answers = {**DEFAULT_ANSWERS, "worker_class": "sync", "include_examples": False}
    result = run_rendered_hook(tmp_path, "post_gen_project.py", answers, cwd=root)
    assert result.returncode == 0, result.stderr
    # Listed-only-for-others files go, empty directories with them, and the table;
    # .env is written.
    assert files_under(root) == {"keep.py", "shared", "shared/other.py", ".env", *ALWAYS_THERE}


def test_post_gen_keeps_a_path_any_chosen_value_lists(tmp_path):
    root = small_project(tmp_path)
    answers = {**DEFAULT_ANSWERS, "worker_class": "gevent", "include_examples": True}
    result = run_rendered_hook(tmp_path, "post_gen_project.py", answers, cwd=root)
    assert result.returncode == 0, result.stderr
    assert files_under(root) == {
        "keep.py",
        "shared",
        "shared/either.py",
        "shared/other.py",
        "green",
        "green/a.py",
        "green/b",
        "green/b/c.py",
        "examples",
        "examples/deep",
        "examples/deep/one.py",
        "examples/deep/two.py",
        ".env",
        *ALWAYS_THERE,
    }


@pytest.mark.parametrize(
    ("table", "sentence"),
    [
        ('[colour.red]\nremove_unless = ["x"]\n', "names 'colour', which cookiecutter.json"),
        ('[worker_class.gthraed]\nremove_unless = ["x"]\n', "names a value worker_class cannot"),
        ('[worker_class.sync]\nremove_unless = ["../outside"]\n', "must stay inside the project"),
        ('[worker_class.sync]\nremove_unless = ["/etc/passwd"]\n', "must stay inside the project"),
        ('[worker_class.sync]\nremove_unless = ["."]\n', "must stay inside the project"),
        ('[worker_class.sync]\nkeep = ["x"]\n', "must hold exactly one key, remove_unless"),
        ("[worker_class.sync\n", "is not valid TOML"),
    ],
)
def test_post_gen_refuses_a_broken_table_with_one_sentence(tmp_path, table, sentence):
    root = small_project(tmp_path, table)
    answers = {
        **DEFAULT_ANSWERS,
        "_cookiecutter": {"worker_class": ["gthread", "sync", "gevent"]},
        "_worker_classes_by_framework": {"flask": ["gthread", "sync", "gevent"]},
    }
    result = run_rendered_hook(tmp_path, "post_gen_project.py", answers, cwd=root)
    assert result.returncode == 1
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_post_gen_writes_dot_env_with_a_drawn_secret(tmp_path):
    root = small_project(tmp_path)
    result = run_rendered_hook(tmp_path, "post_gen_project.py", DEFAULT_ANSWERS, cwd=root)
    assert result.returncode == 0, result.stderr
    lines = (root / ".env").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# Written by scripts/dot_env.py from .env.example")
    (password,) = (line.removeprefix("REDIS_PASSWORD=") for line in lines if "PASSWORD" in line)
    assert re.fullmatch(r"[0-9a-f]{64}", password), password
    assert "HTTP_PORT=8080" in lines


def test_post_gen_refuses_an_example_that_holds_a_secret_with_one_sentence(tmp_path):
    root = small_project(tmp_path, example="REDIS_PASSWORD=known-to-every-clone\n")
    result = run_rendered_hook(tmp_path, "post_gen_project.py", DEFAULT_ANSWERS, cwd=root)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        ".env.example gives the secret REDIS_PASSWORD a value, which every clone of the "
        "repository would know; leave it empty there."
    ]
    assert not (root / ".env").exists()
