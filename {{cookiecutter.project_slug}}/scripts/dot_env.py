"""Write .env for compose: .env.example's settings, with each secret drawn at random here.

.env.example is committed, so it holds no secret: each one is empty there, and
compose refuses to start while one is empty (`${NAME:?...}` in compose.yaml)
rather than run with a value every clone of the repository knows. This script
copies the example to .env, giving every secret a fresh value from the
operating system's random source; git ignores .env (.gitignore), and so does
the image's build (.dockerignore). The template's post-generation hook runs
it, and `make .env` (which `make up` and `make test-compose` need) runs it in
a clone that has none. An existing .env is left as it is: its secrets are in
use (Redis's clients, Django's signed sessions). The standard library only, so
it runs before `make install`. A refusal is one sentence on stderr, exit 1.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

EXAMPLE = Path(".env.example")
TARGET = Path(".env")
# The variables that are secrets: each is one empty line in the example.
{% if cookiecutter.framework == "django" %}
SECRETS = ("REDIS_PASSWORD", "DJANGO_SECRET_KEY")
{% else %}
SECRETS = ("REDIS_PASSWORD",)
{% endif %}
# 32 random bytes as hex: 256 bits in letters and digits only, so a value needs no
# quoting in .env or inside REDIS_URL, and is longer than Django's 50-character minimum.
SECRET_BYTES = 32
# What .env says of itself, in place of the example's opening comment (which speaks
# of the example: up to its first blank line).
HEADER = (
    f"# Written by scripts/dot_env.py from {EXAMPLE}, with secrets drawn on this machine.\n"
    "# Never commit it (git ignores it). Delete it and run `make .env` for new secrets.\n"
)


class ExampleError(Exception):
    """The example cannot be turned into .env; the message is the sentence to print."""


def filled(example: str) -> str:
    """The example's text with a fresh value on each secret's line, under HEADER."""
    given = example.splitlines(keepends=True)
    while given and given[0].startswith("#"):
        given.pop(0)
    lines: list[str] = []
    seen: list[str] = []
    for line in given:
        name, equals, value = line.rstrip("\r\n").partition("=")
        if equals and name in SECRETS:
            if value.strip():
                raise ExampleError(
                    f"{EXAMPLE} gives the secret {name} a value, which every clone of the "
                    "repository would know; leave it empty there."
                )
            seen.append(name)
            line = f"{name}={secrets.token_hex(SECRET_BYTES)}\n"
        lines.append(line)
    for name in SECRETS:
        if seen.count(name) != 1:
            raise ExampleError(
                f"{EXAMPLE} must hold exactly one line {name}= (it has {seen.count(name)})."
            )
    return HEADER + "".join(lines)


def write_new(path: Path, text: str) -> bool:
    """Write `text` to a new file only its owner can read; False if `path` exists."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
    except BaseException:
        # Half a .env would pass for a whole one on the next run.
        path.unlink(missing_ok=True)
        raise
    return True


def main() -> int:
    try:
        written = write_new(TARGET, filled(EXAMPLE.read_text(encoding="utf-8")))
    except ExampleError as error:
        print(error, file=sys.stderr)
        return 1
    except OSError as error:
        print(f"Could not write {TARGET} from {EXAMPLE}: {error}.", file=sys.stderr)
        return 1
    if written:
        print(f"Wrote {TARGET} with new random {', '.join(SECRETS)} (git ignores it).")
    else:
        print(f"{TARGET} exists; its secrets are kept.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
