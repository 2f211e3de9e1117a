# Two commands matter: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Debian packages of the servers the store tests run against (started by the tests themselves).
SERVER_PACKAGES := redis-server redis-tools postgresql mariadb-server memcached openssl chromium

.PHONY: demo test check lint typecheck bench clean servers docs soak

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
		[ "$$(id -u)" = 0 ] && rm -rf $(VENV) && apt-get update -q && \
		apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[redis,sql,memcached,migrate]' --group dev
	@touch $@

demo: $(STAMP)
	$(PY) examples/tutorial/app.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks docs
	$(VENV)/bin/ruff format --check src tests examples benchmarks docs

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Installs the store servers with apt-get when they are missing and we are root; otherwise their
# tests skip with a reason (and fail under CI=true).
servers:
	@missing=""; \
	for bin in redis-server redis-cli memcached mariadbd openssl chromium; do \
		command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || missing="$$missing $$bin"; \
	done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing initdb"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing store servers (missing:$$missing)"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -q --no-install-recommends $(SERVER_PACKAGES); \
		else \
			echo "missing:$$missing; their store tests will skip (run as root to install)"; \
		fi; \
	fi

test: servers lint typecheck
	$(VENV)/bin/pytest

# The fast lane while you work: lint, types and every test not marked slow (about 60% of them,
# in about a minute; docs/contributing.md says which are slow). `make test` still runs it all.
check: servers lint typecheck
	$(VENV)/bin/pytest -m "not slow"

# The full-size load test: 50,000 sessions and 200,000 requests on each of the six stores, with
# the store size and RSS reported.
soak: servers $(STAMP)
	FSS_SOAK=1 $(VENV)/bin/pytest tests/reliability/test_load.py -s

docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

# The test-client run, the HTTP run (gunicorn + wrk), the SQL, scale and size-check runs, then
# the plots.
# wrk is installed with apt-get when it is missing and we are root; otherwise http_bench.py
# reports the HTTP part as skipped.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing wrk"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk \
			|| { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -q --no-install-recommends wrk; } || true; \
		else \
			echo "wrk missing; the HTTP benchmark will be skipped (run as root to install)"; \
		fi; }
	$(PY) benchmarks/run.py
	$(PY) benchmarks/http_bench.py
	$(PY) benchmarks/scale_bench.py
	$(PY) benchmarks/patch_bench.py
	$(PY) benchmarks/plot.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
