# The template's own checks and a demo. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -o errexit -o nounset -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.SUFFIXES:

TEMPLATE_DIR := {{cookiecutter.project_slug}}
VENV := .venv
PYTHON := $(VENV)/bin/python
DEMO_DIR := build/demo
# What tools leave behind inside the template directory; cookiecutter would
# copy it into every generated project.
LEFTOVERS := \( -name __pycache__ -o -name .pytest_cache -o -name .ruff_cache -o -name '*.egg-info' \)

.PHONY: help test system-deps venv lint demo clean clean-template

help:
	@echo "make test     install nginx + redis-server if missing, then the template's tests:"
	@echo "              hooks, every worker class generated, linted and its own 'make test' run"
	@echo "make demo     generate the default project into $(DEMO_DIR) and run its stack (Ctrl-C stops)"
	@echo "make lint     ruff on hooks/ and tests/"
	@echo "make clean    remove $(VENV), build/ and tool caches"

system-deps:
	bash '$(TEMPLATE_DIR)/scripts/install-system-deps.sh'

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Caches left in the template directory would be copied into the projects under test.
clean-template:
	find '$(TEMPLATE_DIR)' $(LEFTOVERS) -prune -exec rm -rf {} +

test: system-deps venv clean-template
	$(PYTHON) -m pytest tests -v

lint: venv
	$(PYTHON) -m ruff check hooks tests
	$(PYTHON) -m ruff format --check hooks tests

demo: system-deps venv clean-template
	rm -rf '$(DEMO_DIR)'
	project="$$($(PYTHON) -c 'import sys; from cookiecutter.main import cookiecutter; \
	    print(cookiecutter(".", no_input=True, output_dir=sys.argv[1]))' '$(DEMO_DIR)')"; \
	$(MAKE) -C "$$project" install; \
	$(MAKE) -C "$$project" stack

clean: clean-template
	rm -rf $(VENV) build .pytest_cache .ruff_cache
	find hooks tests $(LEFTOVERS) -prune -exec rm -rf {} +
