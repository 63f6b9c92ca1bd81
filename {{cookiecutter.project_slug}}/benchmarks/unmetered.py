"""The service without its request metrics: the reference that prices them.

The same app as gunicorn loads by default, with the one layer that counts and
times each request (`metrics.InstrumentedWSGI`, or aiohttp's `counted`
middleware) taken off again, so the metrics measure compares `/api/worker`
with and without it and nothing else. gunicorn loads it as
APP_MODULE=unmetered:{{ 'create_app' if cookiecutter.framework == 'aiohttp' else 'app' }}.
"""

{% if cookiecutter.framework == "aiohttp" %}
from {{ cookiecutter.package_name }} import aiohttp_app
from {{ cookiecutter.package_name }}.aiohttp_app import middleware


async def create_app():
    app = await aiohttp_app.create_app()
    # The outermost middleware is the counter; refuse to measure anything else.
    if not app.middlewares or app.middlewares[0] is not middleware.counted:
        raise RuntimeError("aiohttp_app no longer puts `counted` first: update the bench.")
    del app.middlewares[0]
    return app
{% else %}
from {{ cookiecutter.package_name }} import metrics
{% if cookiecutter.framework == "django" %}
from {{ cookiecutter.package_name }}.django_project.wsgi import application
{% else %}
from {{ cookiecutter.package_name }}.flask_app import create_app

flask_app = create_app()
application = flask_app.wsgi_app
{% endif %}

if not isinstance(application, metrics.InstrumentedWSGI):
    raise RuntimeError("The app is not wrapped in metrics.InstrumentedWSGI: update the bench.")
{% if cookiecutter.framework == "django" %}
app = application.app
{% else %}
flask_app.wsgi_app = application.app
app = flask_app
{% endif %}
{% endif %}
