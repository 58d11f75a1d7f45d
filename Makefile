# The two README commands: `make demo` (set up + index the demo corpus + example searches)
# and `make test` (set up + the test suite). Both work offline from the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo demo-cli ui test test-deps lint models bench-sparse bench-dense bench-query bench-indexing bench-scale clean
DEMO_INDEX := .hybrid-search/demo-index

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: its local CPU wheel; any other spec would pull CUDA builds.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	$(BIN)/hybrid-search models pull
	touch $(STAMP)

install: $(STAMP)

models: $(STAMP)
	$(BIN)/hybrid-search models pull

# Index the demo corpus, print example searches with token overlaps, then serve the UI on 127.0.0.1.
demo: demo-cli
	HF_HUB_OFFLINE=1 $(BIN)/hybrid-search ui --index $(DEMO_INDEX)

# The same without the UI, for scripts.
demo-cli: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/hybrid-search demo --index $(DEMO_INDEX)

ui: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/hybrid-search ui --index $(DEMO_INDEX)

# Lint and types, as CI runs them: ruff (check + format) over the tree, mypy over the core library.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) test-deps
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# System packages the tests use, so that they run rather than skip: Debian's Chromium (the browser the UI test
# drives through Playwright, which never downloads a browser of its own) and docker-compose (validates
# docker-compose.yml without an engine). Installed with apt-get when root; otherwise the command is printed.
SYSTEM_TEST_PACKAGES_CHECK = command -v docker-compose >/dev/null 2>&1 || echo docker-compose; \
	[ -x /usr/bin/chromium ] || echo chromium; [ -x /usr/bin/chromedriver ] || echo chromium-driver
test-deps:
	@missing="$$($(SYSTEM_TEST_PACKAGES_CHECK))"; missing="$$(echo $$missing)"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing the test suite's system packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "make test: the browser and compose tests need $$missing, and will be skipped without them." >&2; \
		echo "Install them with: sudo apt-get install -y --no-install-recommends $$missing" >&2; \
	fi

# Sparse encoding speed against sentence-transformers (same model, same texts, one run); < 1 minute.
bench-sparse: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_sparse.py

# The other speed benchmarks of docs/benchmarks.md ("Speed and scale"); run each alone.
bench-dense: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_dense.py
bench-query: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_query.py --inference-free
bench-indexing: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_indexing.py
# 1M synthetic documents: about 20 minutes, 12 GB of memory, 3.5 GB of disk.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py --sizes 100000,1000000

clean:
	rm -rf .hybrid-search .pytest_cache
