"""Every route of the service; each view's name is its operationId in the API's description."""

from __future__ import annotations

from django.urls import {% if cookiecutter.include_examples %}include, {% endif %}path

from . import views
{% if cookiecutter.include_examples %}
from .examples import urls as example_urls
{% endif %}

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.scrape, name="scrape"),
    path("api/openapi.json", views.openapi, name="openapi"),
{% if cookiecutter.include_examples %}
    path("api/", include(example_urls)),
{% endif %}
]

handler400 = views.bad_request
handler403 = views.forbidden
handler404 = views.not_found
handler500 = views.server_error
