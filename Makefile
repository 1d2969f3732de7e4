# RED connect — two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# The address printed on slips and used for the CSP follows the port `make run` serves on.
PUBLIC_URL ?= http://$(HOST):$(PORT)
export PUBLIC_URL
# WeasyPrint (compliance PDF) needs Pango and the DejaVu fonts.
APT_RUN := gettext libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core
APT_TEST := gettext redis-server chromium poppler-utils libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core

.PHONY: run test lint messages migrate demo apt-run apt-test help

help:
	@echo "make run   - install, migrate, seed demo data, print codes, serve on http://$(HOST):$(PORT)/"
	@echo "make test  - install, start test services, run the whole test suite"

# Debian packages, installed only when missing (root or sudo needed the first time).
apt-%:
	@pkgs="$(APT_$(shell echo $* | tr a-z A-Z))"; missing=""; \
	for p in $$pkgs; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.runtime: requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt $(VENV)/.runtime
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# axe-core for the accessibility tests (tests/e2e/test_axe.py), pinned in package.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

messages: $(VENV)/.runtime
	@cd . && $(PY) manage.py compilemessages -v0 --ignore=.venv

migrate: $(VENV)/.runtime
	$(PY) manage.py migrate -v0

var/demo-password:
	@mkdir -p var && $(PY) -c "import secrets; print(secrets.token_urlsafe(12))" > $@ && chmod 600 $@

demo: migrate var/demo-password
	@DEMO_PASSWORD=$$(cat var/demo-password) $(PY) manage.py seed_demo >/dev/null
	@echo; echo "=== RED connect demo ==="
	@echo "Admin login:  http://$(HOST):$(PORT)/admin/login/"
	@echo "  users demo-arzt (doctor), demo-mfa (staff), demo-pruefer (auditor)"
	@echo "  password for all three: $$(cat var/demo-password)"
	@echo "New appointment for now:"
	@$(PY) manage.py create_appointment --doctor demo-arzt
	@echo "Patient: open http://$(HOST):$(PORT)/ and enter a name and the patient code."
	@echo "Doctor: log in as demo-arzt, then enter the doctor code on the same page."; echo

run: apt-run $(VENV)/.runtime messages demo
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

test: apt-test $(VENV)/.dev node_modules/.installed messages
	$(PY) scripts/run_tests.py $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
