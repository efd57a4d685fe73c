# The two commands of the README: `make simulate` and `make test`. Each sets up what it needs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch/torchvision first, pinned to the releases that install on a CPU-only machine (see README).
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: setup simulate test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@# Debian's redis-server: the service's shared sessions and the Redis Streams source (tests
	@# start their own instances). Installed when missing and we are root (as in CI).
	@command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } \
		|| echo "warning: redis-server missing (apt-get install redis-server); Redis tests will fail"; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[framework,dev]'
	touch $(STAMP)

simulate: $(STAMP)
	$(BIN)/tandem-simulate $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# two workers, one test file each at a time (module fixtures are built once): most of the
	@# suite's time is spent waiting on Flower, Ray and Redis processes, so 2 cores run 2 files
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/data_bench.py

clean:
	rm -rf $(VENV) .cache runs outputs multirun .pytest_cache .ruff_cache
