"""The example endpoints' routes, under /api/ (see ../urls.py)."""

from __future__ import annotations

from django.urls import path, register_converter

from ...exports import ID_PATTERN
from . import views


class ExportId:
    """An id as the export store makes them: any other string names no export (404)."""

    regex = ID_PATTERN.pattern

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ExportId, "export_id")

# A name stays a str: one the service refuses is 400 invalid_name, not 404.
urlpatterns = [
    path("worker", views.worker, name="worker"),
    path("counters/<str:name>/incr", views.incr_counter, name="incr_counter"),
    path("counters/<str:name>", views.get_counter, name="get_counter"),
    path("locked-increment/<str:name>", views.locked_increment, name="locked_increment"),
    path("exports", views.create_export, name="create_export"),
    path("exports/<export_id:export_id>", views.get_export, name="get_export"),
    path("exports/<export_id:export_id>/download", views.download_export, name="download_export"),
    path("tasks/run", views.run_task, name="run_task"),
]
