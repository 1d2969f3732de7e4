# RED connect — two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# The address printed on slips and used for the CSP follows the port `make run` serves on.
PUBLIC_URL ?= http://$(HOST):$(PORT)
export PUBLIC_URL

.PHONY: run test lint messages migrate demo system-run system-test help

help:
	@echo "make run   - install, migrate, seed demo data, print codes, serve on http://$(HOST):$(PORT)/"
	@echo "make test  - install, start test services, run the whole test suite"

# Debian packages, installed only when missing (root or sudo the first time). The list,
# with what each package is for: scripts/debian-packages.txt.
system-run system-test: system-%:
	@scripts/install-debian-packages.sh $*

$(VENV)/.runtime: requirements.txt
	@test -x $(VENV)/bin/pip || python3 -m venv --clear $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt $(VENV)/.runtime
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# Test-only JavaScript packages (axe-core), pinned in package-lock.json.
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

run: system-run $(VENV)/.runtime messages demo
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

test: system-test $(VENV)/.dev node_modules/.installed messages
	$(PY) scripts/run_tests.py $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
