"""Every route of the service, mounted from the one route table (see views.py)."""

from __future__ import annotations

from . import views
{% if cookiecutter.include_examples %}
from .counters import HANDLERS as DJANGO_HANDLERS
{% else %}

# Handlers that replace the shared ones in a Django project (none without the examples).
DJANGO_HANDLERS: dict = {}
{% endif %}

urlpatterns = views.urlpatterns(DJANGO_HANDLERS)

handler400 = views.bad_request
handler403 = views.forbidden
handler404 = views.not_found
handler500 = views.server_error
