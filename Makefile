# The two commands: `make demo` (embedded default: SQLite, no Redis) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SERVE ?= 1
PORT ?= 8000
# pytest-xdist workers for `make test` (each with its own test database and Redis database number)
TEST_WORKERS ?= 2

.PHONY: demo test lint install install-dev bench clean

$(VENV)/.runtime-installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime-installed
install-dev: $(VENV)/.dev-installed

## Set up and run the whole pipeline offline on the bundled candles, then serve the dashboard (SERVE=0: stop after the summary).
## Always the embedded default (its own SQLite file, no Redis), whatever DATABASE_URL/REDIS_URL the shell exports.
DEMO_ENV := env -u REDIS_URL -u CELERY_BROKER_URL DATABASE_URL=sqlite:///$(CURDIR)/var/demo.sqlite3
demo: install
	mkdir -p var
	$(DEMO_ENV) $(PY) manage.py migrate --noinput -v 0
	$(DEMO_ENV) $(PY) manage.py demo --serve=$(SERVE) --port=$(PORT)

## Set up and run the test suite (against DATABASE_URL/REDIS_URL when set; SQLite and skips otherwise).
test: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=15

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

## Every benchmark in benchmarks/ (PostgreSQL and Redis on 127.0.0.1 for the broadcast, load and WebSocket ones), then
## one line per figure: the median, its ratio to the baseline measured in the same run, the load, PASS/FAIL.
bench: install-dev
	@mkdir -p var; : > var/bench.log; status=0; \
	for script in benchmarks/bench_*.py; do \
		echo "== $$script" | tee -a var/bench.log; \
		$(PY) $$script 2>&1 | tee -a var/bench.log; [ $${PIPESTATUS[0]} -eq 0 ] || status=1; \
	done; \
	echo "== summary (var/bench.log)"; grep '^RESULT' var/bench.log; exit $$status

clean:
	rm -rf $(VENV) db.sqlite3* var media staticfiles
