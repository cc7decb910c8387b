# The two commands of the README: `make up` and `make test`. Each creates or refreshes
# .venv and installs what it needs (Python packages, the npm pieces in node_modules, and for
# the tests Debian's chromium and postgresql; for both Debian's bubblewrap); nothing else has to be installed by hand.

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

# JupyterHub's proxy and the bundled development OIDC provider (package.json).
node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# The browser of the browser tests: Debian's chromium, driven by Playwright (never `playwright install`).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium fonts-liberation

# The sandbox of user code (job kernels, workspace servers, models that can run code): Debian's
# bubblewrap; `loopml up` refuses to start without it unless job_isolation = "off".
BWRAP := /usr/bin/bwrap
$(BWRAP):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends bubblewrap

# The PostgreSQL of the scale-out tests: Debian's server binaries only. The fixture runs its own
# server in a temp dir on a free loopback port; the system cluster the package may create is
# never started by the tests.
POSTGRES_STAMP := $(VENV)/.postgresql
$(POSTGRES_STAMP): | $(PY)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql; }
	touch $@

install: $(VENV)/.installed node_modules/.installed $(BWRAP)

install-test: $(VENV)/.installed-test node_modules/.installed $(CHROMIUM) $(POSTGRES_STAMP) $(BWRAP)

up: install
	$(VENV)/bin/loopml up $(UP_ARGS)

down:
	$(VENV)/bin/loopml down

status:
	$(VENV)/bin/loopml status

test: install-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) bench/jobs.py

clean:
	rm -rf $(VENV) *.egg-info node_modules
