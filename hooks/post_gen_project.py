"""Remove the files the chosen answers don't need, as template-options.toml says.

cookiecutter renders this file with Jinja and runs it in the generated
project's root. Which file belongs to which answer is data, kept in the table
``template-options.toml`` beside the generated files; this script only reads
it, removes what the unchosen answers own, removes directories left empty,
and then removes the table. A refusal is one sentence on stderr and exit
status 1, never a traceback.
"""

from __future__ import annotations

import json
import shutil
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


def main() -> int:
    try:
        apply(Path.cwd())
    except (TableError, OSError) as error:
        message = (
            str(error) if isinstance(error, TableError) else f"Could not remove files: {error}."
        )
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
