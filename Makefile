# The two commands of the README: `make up` and `make test`. Each creates or refreshes
# .venv and installs what it needs; nothing else has to be installed by hand.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
UP_ARGS ?=
PYTEST_ARGS ?=

.PHONY: up down status test install install-test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py | $(PY)
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

up: install
	$(VENV)/bin/loopml up $(UP_ARGS)

down:
	$(VENV)/bin/loopml down

status:
	$(VENV)/bin/loopml status

test: install-test
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) bench/jobs.py

clean:
	rm -rf $(VENV) *.egg-info
