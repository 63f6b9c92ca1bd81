"""Remove the files the chosen answers don't need, as template-options.toml says.

cookiecutter renders this file with Jinja and runs it in the generated
project's root. Which file belongs to which answer is data, kept in the table
``template-options.toml`` beside the generated files; this script only reads
it, removes what the unchosen answers own, removes directories left empty,
and then removes the table. A refusal is one sentence on stderr and exit
status 1, never a traceback.

Next it writes ``.env``, compose's settings with secrets drawn at random for
this copy alone, by running the project's own ``scripts/dot_env.py`` (what
``make .env`` runs in a clone, which has no ``.env``: git ignores it).

Then it records which template and which commit the project came from, in
``.cruft.json``, the file ``cruft check`` and ``cruft update`` read, so a
project made with plain cookiecutter takes the template's later changes just
as one made with ``cruft create`` (which writes that file itself).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path, PurePosixPath

# Every answer, as JSON: a JSON object never contains three quotes in a row,
# so the raw string below stays valid Python whatever was typed.
ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

TABLE_NAME = "template-options.toml"
RULE_KEY = "remove_unless"


class TableError(Exception):
    """The table cannot be applied; the message is the sentence to print."""


def as_key(value: object) -> str:
    """Spell an answer the way the table's keys spell it (true, false, gthread)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def possible_values(variable: str) -> set[str] | None:
    """The values a variable can take, or None when it is free text."""
    declared = ANSWERS.get("_cookiecutter", {}).get(variable)
    if isinstance(declared, bool):
        return {"true", "false"}
    if isinstance(declared, list):
        return {as_key(choice) for choice in declared}
    return None


def checked_path(root: Path, raw: object, where: str) -> Path:
    """A listed path, refused unless it is relative and stays inside the project."""
    if not isinstance(raw, str) or not raw.strip():
        raise TableError(f"{where} lists {raw!r}, which is not a path.")
    relative = PurePosixPath(raw)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise TableError(f"{where} lists {raw!r}; paths must stay inside the project.")
    return root.joinpath(*relative.parts)


def read_rules(root: Path) -> dict[Path, dict[str, set[str]]]:
    """Map each listed path to {variable: the values under which it is kept}."""
    try:
        import tomllib
    except ModuleNotFoundError:
        raise TableError("Generating this template needs Python 3.11 or newer.") from None

    table_path = root / TABLE_NAME
    try:
        table = tomllib.loads(table_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TableError(f"The template has no {TABLE_NAME}; it cannot be generated.") from None
    except tomllib.TOMLDecodeError as error:
        raise TableError(f"{TABLE_NAME} is not valid TOML ({error}).") from None

    rules: dict[Path, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for variable, by_value in table.items():
        if variable not in ANSWERS or variable.startswith("_"):
            raise TableError(
                f"{TABLE_NAME} names {variable!r}, which cookiecutter.json does not ask."
            )
        if not isinstance(by_value, dict):
            raise TableError(f"{TABLE_NAME}: {variable!r} must hold one table per value.")
        allowed = possible_values(variable)
        for value, entry in by_value.items():
            where = f"{TABLE_NAME} [{variable}.{value}]"
            if allowed is not None and value not in allowed:
                raise TableError(f"{where} names a value {variable} cannot take.")
            if not isinstance(entry, dict) or set(entry) != {RULE_KEY}:
                raise TableError(f"{where} must hold exactly one key, {RULE_KEY}.")
            if not isinstance(entry[RULE_KEY], list):
                raise TableError(f"{where} {RULE_KEY} must be a list of paths.")
            for raw in entry[RULE_KEY]:
                rules[checked_path(root, raw, where)][variable].add(value)
    return rules


def is_kept(kept_under: dict[str, set[str]]) -> bool:
    """Kept when, for every variable that lists the path, a listing value was chosen.

    Values of one variable are alternatives (gthread or gevent); different
    variables must all agree (flask and include_examples).
    """
    return all(as_key(ANSWERS[variable]) in values for variable, values in kept_under.items())


def remove(path: Path, root: Path) -> None:
    """Remove a file or directory if it is there, then its parents left empty."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    else:
        return
    parent = path.parent
    while parent != root and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def apply(root: Path) -> None:
    rules = read_rules(root)
    for path in sorted(rules):
        if not is_kept(rules[path]):
            remove(path, root)
    (root / TABLE_NAME).unlink()


# --- this copy's secrets --------------------------------------------------------

DOT_ENV_SCRIPT = "scripts/dot_env.py"


def write_dot_env(root: Path) -> int:
    """Run the project's own writer of .env; it prints its own sentence on failure.

    Its sentences go to stderr, as the hooks' own: what cookiecutter's caller
    prints on stdout is the project's path alone (`make lock` reads it).
    """
    try:
        return subprocess.run(
            [sys.executable, DOT_ENV_SCRIPT], cwd=root, timeout=60, check=False, stdout=sys.stderr
        ).returncode
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"Could not run {DOT_ENV_SCRIPT}: {error}.", file=sys.stderr)
        return 1


# --- where the project came from, for cruft ------------------------------------

CRUFT_FILE = ".cruft.json"
# Entries that describe one run of cookiecutter on one machine (its output and
# clone directories), not the project; cruft's own record has none of them.
RUN_ONLY_KEYS = ("_output_dir", "_repo_dir", "_checkout", "_template", "_commit")


def git(directory: Path, *args: str) -> str | None:
    """A git command's output in `directory`, or None when git fails or is absent."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def from_callers_directory(raw: str) -> Path:
    """A path cookiecutter was given, absolute.

    A relative one is relative to where cookiecutter was started, and this hook
    runs in the new project instead; PWD (which the hook inherits from the
    shell that started cookiecutter) still names that directory.
    """
    path = Path(raw).expanduser()
    return path if path.is_absolute() else Path(os.environ.get("PWD", ".")) / path


def cruft_record(answers: dict) -> tuple[dict | None, str | None]:
    """What .cruft.json holds for these answers, and a sentence for the person (or None).

    The commit is the template repository's HEAD: what cookiecutter rendered
    when the template is a clean git checkout, or a clone of a URL.
    """
    template_dir = from_callers_directory(answers["_repo_dir"])
    if not (template_dir / "cookiecutter.json").is_file():
        return None, (
            f"Could not find the template ({answers['_repo_dir']}) from here, so no "
            f"{CRUFT_FILE} was written; `cruft link <template git URL>` links the project later."
        )
    commit = git(template_dir, "rev-parse", "--verify", "HEAD^{commit}")
    top = git(template_dir, "rev-parse", "--show-toplevel")
    if commit is None or top is None:
        return None, (
            f"The template at {template_dir} is not a git repository (or git is not "
            f"installed), so there is no commit to record and no {CRUFT_FILE} was written; "
            "`cruft link <template git URL>` links the project later."
        )
    # A local checkout is recorded by its path, as `cruft create <path>` does; a
    # template cookiecutter cloned (a URL, gh:owner/name) by the URL it cloned.
    if from_callers_directory(answers["_template"]).is_dir():
        template = str(Path(top).resolve())
    else:
        template = git(template_dir, "remote", "get-url", "origin") or answers["_template"]
    directory = (git(template_dir, "rev-parse", "--show-prefix") or "").rstrip("/") or None
    context = {key: value for key, value in answers.items() if key not in RUN_ONLY_KEYS}
    record = {
        "template": template,
        "commit": commit,
        "checkout": answers.get("_checkout"),
        "context": {"cookiecutter": {**context, "_template": template, "_commit": commit}},
        "directory": directory,
    }
    note = None
    if git(template_dir, "status", "--porcelain", "--", "."):
        note = (
            f"The template at {top} has uncommitted changes; {CRUFT_FILE} records its last "
            f"commit {commit[:12]}, so `cruft update` will count those changes as this "
            "project's own."
        )
    return record, note


def record_template(root: Path) -> None:
    """Write .cruft.json, unless cruft is generating (it writes its own) or nothing ran us."""
    if "_commit" in ANSWERS or "_repo_dir" not in ANSWERS:
        # cruft sets _commit, both in `cruft create` and when `cruft update`
        # renders the old and new commits to diff them: a record written here
        # would only show up in that diff.
        return
    record, note = cruft_record(ANSWERS)
    if record is not None:
        # The same layout as cruft's own file, so a later `cruft update` rewrites it alike.
        text = json.dumps(record, ensure_ascii=False, indent=2, separators=(",", ": "))
        (root / CRUFT_FILE).write_text(text + "\n", encoding="utf-8")
    if note is not None:
        print(note, file=sys.stderr)


def main() -> int:
    try:
        apply(Path.cwd())
    except (TableError, OSError) as error:
        message = (
            str(error) if isinstance(error, TableError) else f"Could not remove files: {error}."
        )
        print(message, file=sys.stderr)
        return 1
    if write_dot_env(Path.cwd()) != 0:
        return 1
    try:
        record_template(Path.cwd())
    except OSError as error:
        # The project itself is complete; only the link to its template is missing.
        print(f"Could not write {CRUFT_FILE}: {error}.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
