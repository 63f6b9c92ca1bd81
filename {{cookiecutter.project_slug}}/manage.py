#!/usr/bin/env python
"""Django's command-line utility for this project (migrate, check, shell...)."""

import os
import sys

# The package lives in src/; `make install` installs it (editable) into the venv.
SETTINGS = "{{ cookiecutter.package_name }}.django_project.settings"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
