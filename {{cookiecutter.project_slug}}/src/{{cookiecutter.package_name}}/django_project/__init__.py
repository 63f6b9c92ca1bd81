"""The Django project: settings, URLs and the adapter over the framework-free toolkit."""
