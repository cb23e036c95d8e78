# Two commands matter: `make demo` and `make test`. Both set everything up on a fresh machine
# that has only Python 3.10+ and make: uv is bootstrapped from PyPI when missing, then the
# locked environment (uv.lock) is installed into .venv.
# The interpreter .venv is built on: the system's own CPython when it is 3.10+ (docs/development.md).
PYTHON ?= $(shell /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null && echo /usr/bin/python3 || echo python3)
BOOTSTRAP_PYTHON ?= python3
UV ?= $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: setup test test-fast test-cache pytest lint typecheck demo up cluster bench chaos clean compose-env redis-server chromium postgresql docker-compose

$(CURDIR)/.tools/bin/uv:
	$(BOOTSTRAP_PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv

# Bytecode is compiled at install (docs/development.md, Interpreter and bytecode).
$(VENV)/.synced: pyproject.toml uv.lock Makefile | $(UV)
	$(UV) sync --frozen --extra redis --extra celery --compile-bytecode --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced
	$(VENV)/bin/python -m compileall -q ibkr_provider sandbox tests dags scripts benchmarks

lint: setup
	$(VENV)/bin/ruff check ibkr_provider sandbox tests dags scripts benchmarks
	$(VENV)/bin/ruff format --check ibkr_provider sandbox tests dags scripts benchmarks

typecheck: setup
	$(VENV)/bin/mypy

# The Redis session-cache tests need a real redis-server; install Debian's when it is missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || { \
	  echo "Installing redis-server (apt-get) for the Redis session-cache tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }

# The UI tests drive Debian's chromium-headless-shell with playwright (playwright cannot download
# browsers here; the headless shell is what it runs headless itself). Where that package cannot be
# installed, a full chromium serves: the one on the machine, else Debian's (docs/development.md,
# The browser).
chromium:
	@command -v chromium-headless-shell >/dev/null 2>&1 || [ -x /usr/bin/chromium-headless-shell ] || { \
	  echo "Installing chromium-headless-shell (apt-get) for the browser tests of the Airflow UI"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium-headless-shell >/dev/null; } || \
	  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || { \
	    echo "chromium-headless-shell could not be installed: installing chromium (apt-get) instead"; \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }

# The Celery cluster (`make cluster`, its e2e test) keeps Airflow's metadata in PostgreSQL.
postgresql:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "Installing PostgreSQL (apt-get) for the Celery cluster"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

# docker-compose.yaml is validated by Debian's docker-compose (its `config` needs no engine).
docker-compose:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "Installing docker-compose (apt-get) to validate docker-compose.yaml"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }

# pytest keeps the test modules it rewrites (for its assert messages) only where bytecode may be
# written: with PYTHONDONTWRITEBYTECODE set, as on CI machines, every worker rewrote every module
# again. The test targets let it write, and one collection warms that cache for all the workers
# (docs/development.md, Workers).
PYTEST_ENV := env -u PYTHONDONTWRITEBYTECODE
test-cache: setup
	$(PYTEST_ENV) $(VENV)/bin/pytest --collect-only -q -p no:xdist tests >/dev/null

# Worker counts and their figures: docs/development.md, Workers.
PYTEST := $(PYTEST_ENV) $(VENV)/bin/pytest -n 4 --dist loadgroup --no-loadscope-reorder --durations=25

# The edit loop (under a minute): unit and integration tiers, no Airflow CLI runs, without the
# tests marked slow (they wait out IBKR's pacing; `make test` runs them).
test-fast: test-cache
	$(PYTEST_ENV) $(VENV)/bin/pytest -n 8 --dist loadgroup --no-loadscope-reorder --durations=10 -m "not slow" tests/unit tests/integration

# Every tier (what CI runs via `make test`).
pytest: test-cache redis-server chromium postgresql docker-compose
	$(PYTEST)

test: lint typecheck pytest

demo: setup
	$(VENV)/bin/python scripts/demo.py

# The sandbox and `airflow standalone` with the connections preset; Ctrl-C stops both.
up: setup
	$(VENV)/bin/python scripts/up.py

# Measured scenarios (shared session vs naive login, shared pacing); rewrites docs/benchmarks.md.
# Airflow on CeleryExecutor: PostgreSQL, Redis, the sandbox, api-server, scheduler,
# dag-processor, triggerer and two Celery workers (two "hosts"); Ctrl-C stops all of it.
cluster: setup redis-server postgresql
	$(VENV)/bin/python scripts/cluster.py

bench: setup redis-server
	$(VENV)/bin/python benchmarks/run_all.py

# Ten minutes of the example DAGs on `make cluster` under injected faults (CHAOS_SEED repeats a
# run); prints its RESULT line and exits non-zero when anything was lost or placed twice.
chaos: setup redis-server postgresql
	$(VENV)/bin/python benchmarks/chaos.py

# docker-compose.yaml has no default secrets: this writes a `.env` with fresh ones (never overwrites).
compose-env:
	$(BOOTSTRAP_PYTHON) scripts/compose_env.py .env

clean:
	rm -rf $(VENV) .tools .airflow .sandbox .pytest_cache .mypy_cache .ruff_cache
