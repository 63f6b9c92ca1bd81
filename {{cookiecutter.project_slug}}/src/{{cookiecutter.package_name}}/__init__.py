"""{{ cookiecutter.project_name }}: {{ cookiecutter.description }}"""

# The web framework this project was generated for; /api/worker reports it.
FRAMEWORK = "{{ cookiecutter.framework }}"
