# The two README commands: `make demo` (set up + index the demo corpus + example searches)
# and `make test` (set up + the test suite). Both work offline from the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo demo-cli ui test models bench-sparse bench-dense bench-query bench-indexing bench-scale clean
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

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

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
