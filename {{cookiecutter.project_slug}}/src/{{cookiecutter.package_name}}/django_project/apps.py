"""This project's Django app: it exists to register the shared-state system check."""

from __future__ import annotations

from django.apps import AppConfig


class DjangoProjectConfig(AppConfig):
    name = __package__
    label = "django_project"

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the checks)
