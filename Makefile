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
# Each framework x worker class has its own pair of locks, which the generated
# requirements/*.txt include; `make lock` regenerates them in projects under LOCK_BUILD.
LOCKS_DIR := templates/locks
LOCK_BUILD := build/lock
# One uv cache for `make lock` and the tests: a second run downloads nothing it has.
export UV_CACHE_DIR ?= $(CURDIR)/build/uv-cache
# Every supported pair as framework-worker_class, read from cookiecutter.json's table.
COMBINATIONS = $(shell python3 -c 'import json; t = json.load(open("cookiecutter.json")); \
	print(*(f"{f}-{w}" for f, ws in t["_worker_classes_by_framework"].items() for w in ws))')
# What tools leave behind inside the template directory; cookiecutter would
# copy it into every generated project.
LEFTOVERS := \( -name __pycache__ -o -name .pytest_cache -o -name .ruff_cache -o -name .mypy_cache -o -name '*.egg-info' \)

.PHONY: help test system-deps venv lint lock demo clean clean-template

help:
	@echo "make test     install nginx + redis-server if missing, then the template's tests:"
	@echo "              hooks, every worker class generated, linted and its own 'make test' run"
	@echo "make demo     generate the default project into $(DEMO_DIR) and run its stack (Ctrl-C stops)"
	@echo "make lint     ruff on hooks/ and tests/"
	@echo "make lock     re-resolve every generated project's locks ($(LOCKS_DIR)/) after"
	@echo "              editing its pyproject.toml; UPGRADE=1 moves every pin to the newest"
	@echo "make clean    remove $(VENV), build/ and tool caches"

# Everything the generated projects' suites and benches need, installed before they
# run side by side: two apt-gets at once would fight over dpkg's lock.
system-deps:
	bash '$(TEMPLATE_DIR)/scripts/install-system-deps.sh' test
	bash '$(TEMPLATE_DIR)/scripts/install-system-deps.sh' bench

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

# For each pair: generate a project (its requirements/ are the current locks, the pins
# to keep), run the project's own `make lock` with this venv's uv, copy the result back.
# A pair with no locks yet starts from empty files. A class the framework fixes
# (aiohttp's) is not asked, so it is not answered.
lock: venv clean-template
	for combination in $(COMBINATIONS); do \
		mkdir -p "$(LOCKS_DIR)/$$combination"; \
		touch "$(LOCKS_DIR)/$$combination/main.txt" "$(LOCKS_DIR)/$$combination/dev.txt"; \
		rm -rf "$(LOCK_BUILD)/$$combination"; \
		project="$$($(PYTHON) -c 'import json, sys; from cookiecutter.main import cookiecutter; \
		    asked = json.load(open("cookiecutter.json"))["worker_class"]; \
		    answers = {"framework": sys.argv[2]}; \
		    answers.update({"worker_class": sys.argv[3]} if sys.argv[3] in asked else {}); \
		    print(cookiecutter(".", no_input=True, default_config=True, output_dir=sys.argv[1], \
		    extra_context=answers))' \
		    "$(LOCK_BUILD)/$$combination" "$${combination%%-*}" "$${combination#*-}")"; \
		$(MAKE) -C "$$project" lock UV='$(CURDIR)/$(VENV)/bin/uv' UPGRADE='$(UPGRADE)'; \
		cp "$$project/requirements/main.txt" "$$project/requirements/dev.txt" \
			"$(LOCKS_DIR)/$$combination/"; \
	done

demo: system-deps venv clean-template
	rm -rf '$(DEMO_DIR)'
	project="$$($(PYTHON) -c 'import sys; from cookiecutter.main import cookiecutter; \
	    print(cookiecutter(".", no_input=True, output_dir=sys.argv[1]))' '$(DEMO_DIR)')"; \
	$(MAKE) -C "$$project" install; \
	$(MAKE) -C "$$project" stack

clean: clean-template
	rm -rf $(VENV) build .pytest_cache .ruff_cache .mypy_cache
	find hooks tests $(LEFTOVERS) -prune -exec rm -rf {} +
