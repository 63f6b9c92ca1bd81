"""Refuse answers that would generate a broken project, before any file is rendered.

cookiecutter renders this file with Jinja and runs it. Each refusal is one
sentence on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import keyword
import re
import sys

# Every answer, as JSON: a JSON object never contains three quotes in a row,
# so the raw string below stays valid Python whatever was typed.
ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")
PROJECT_NAME: str = ANSWERS["project_name"]
PROJECT_SLUG: str = ANSWERS["project_slug"]
PACKAGE_NAME: str = ANSWERS["package_name"]
DESCRIPTION: str = ANSWERS["description"]
FRAMEWORK: str = ANSWERS["framework"]
# The class the project runs: the answer, or the one class its framework allows
# (cookiecutter.json renders it; cookiecutter has no choices that depend on another).
WORKER_CLASS: str = ANSWERS["__worker_class"]

# A directory, distribution and Redis key prefix: lowercase words joined by dashes.
SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
SLUG_MAX_LENGTH = 64
# PEP 8 module name; leading underscores and capitals are refused too.
PACKAGE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

# Top-level names the generated project or its dependencies already import.
# A package called one of these would shadow it (or be shadowed by it).
TAKEN_PACKAGE_NAMES = frozenset(
    {
        # the generated project's own top-level directories and modules
        "config",
        "deploy",
        "naive_app",
        "scripts",
        "src",
        "stack",
        "tests",
        # CPython's own test package, which sys.stdlib_module_names leaves out
        "test",
        # frameworks, servers and clients the template can generate code for
        "aiohttp",
        "django",
        "flask",
        "gevent",
        "greenlet",
        "gunicorn",
        "redis",
        "werkzeug",
        # their dependencies and the development tools
        "blinker",
        "click",
        "filelock",
        "itsdangerous",
        "jinja2",
        "markupsafe",
        "packaging",
        "pip",
        "pytest",
        "requests",
        "ruff",
        "setuptools",
        "urllib3",
    }
)

# Which gunicorn worker classes can serve which framework: one table, in
# cookiecutter.json, that the template's tests read too. A new framework is a
# new row there (and its files in template-options.toml), not new code.
WORKER_CLASSES_BY_FRAMEWORK: dict[str, list[str]] = ANSWERS["_worker_classes_by_framework"]


def refusal() -> str | None:
    """Return the sentence that refuses these answers, or None to go ahead."""
    for label, value in (("project_name", PROJECT_NAME), ("description", DESCRIPTION)):
        # Generated files quote these verbatim (TOML strings, docstrings).
        if not value.strip() or not value.isprintable() or '"' in value or "\\" in value:
            return (
                f"{label} must be one line of printable text without double quotes "
                f"or backslashes, not {value!r}."
            )

    if not (2 <= len(PROJECT_SLUG) <= SLUG_MAX_LENGTH) or not SLUG_PATTERN.match(PROJECT_SLUG):
        return (
            f"project_slug {PROJECT_SLUG!r} must be 2 to {SLUG_MAX_LENGTH} characters "
            "of lowercase letters, digits and dashes, starting with a letter "
            "and ending with a letter or digit."
        )

    if not PACKAGE_PATTERN.match(PACKAGE_NAME) or not PACKAGE_NAME.isidentifier():
        return (
            f"package_name {PACKAGE_NAME!r} must be lowercase letters, digits and "
            "underscores, starting with a letter."
        )
    if keyword.iskeyword(PACKAGE_NAME):
        return f"package_name {PACKAGE_NAME!r} is a Python keyword; choose another."
    if PACKAGE_NAME in sys.stdlib_module_names or PACKAGE_NAME in TAKEN_PACKAGE_NAMES:
        return (
            f"package_name {PACKAGE_NAME!r} would shadow a module of that name "
            "that the project or Python already uses; choose another."
        )

    worker_classes = WORKER_CLASSES_BY_FRAMEWORK.get(FRAMEWORK)
    if worker_classes is None:
        return (
            f"framework {FRAMEWORK!r} is not one this template can generate; "
            f"choose one of: {', '.join(WORKER_CLASSES_BY_FRAMEWORK)}."
        )
    if WORKER_CLASS not in worker_classes:
        return (
            f"worker_class {WORKER_CLASS!r} cannot serve framework {FRAMEWORK!r}; "
            f"choose one of: {', '.join(worker_classes)}."
        )
    return None


def main() -> int:
    sentence = refusal()
    if sentence is None:
        return 0
    print(sentence, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
