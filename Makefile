# Two commands on a fresh machine:  `make demo THEME="..."`  and  `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
THEME ?= 周末骑单车去看海 风把白衬衫吹起来
OUT ?= out/demo
TOOLS := .tools
PERF_ANALYZER := $(TOOLS)/perf_analyzer/bin/perf_analyzer

.PHONY: setup system-deps test test-slow lint demo perf-analyzer clean

# System packages the stack needs: libpython3.11 (Triton's Python-backend stub embeds it), libb64 (perf_analyzer),
# chromium + chromium-driver (the web page's end-to-end test), fonts-wqy-microhei (a small CJK font: Chinese titles on
# covers and in screenshots). Installed only when missing; needs root.
# docker-compose (Compose v1.29 on Debian 12; `config` validates docker/compose.yaml in tests/docker) goes without its
# recommended docker.io daemon: only the validator is needed here.
system-deps:
	@missing=""; \
	for p in libpython3.11 libb64-0d chromium chromium-driver libsndfile1 fonts-wqy-microhei; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "warning: could not install$$missing (tests that need them will be skipped with a reason)"; \
	fi; \
	if ! dpkg -s docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then \
	  echo "installing system packages: docker-compose"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    docker-compose >/dev/null) || echo "warning: could not install docker-compose (its test will be skipped)"; \
	fi

$(BIN)/activate:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the local CPU wheel. Anything else would pull CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: system-deps $(VENV)/.installed

# perf_analyzer from the tritonclient 2.48 wheel (the newer standalone wheel needs glibc 2.38); kept out of the venv
# so the client library stays current. It needs libcudart.so.12 even for CPU-only runs.
$(PERF_ANALYZER): | $(VENV)/.installed
	mkdir -p $(TOOLS)/wheels $(TOOLS)/perf_analyzer/bin $(TOOLS)/cudart
	$(BIN)/pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 -d $(TOOLS)/wheels tritonclient==2.48.0
	$(BIN)/pip install -q --no-deps --target $(TOOLS)/cudart nvidia-cuda-runtime-cu12
	cd $(TOOLS)/wheels && $(PY) -c "import zipfile,glob; z=zipfile.ZipFile(glob.glob('tritonclient-2.48.0-*.whl')[0]); z.extract('tritonclient-2.48.0.data/data/bin/perf_analyzer', '.')"
	cp $(TOOLS)/wheels/tritonclient-2.48.0.data/data/bin/perf_analyzer $@
	chmod +x $@

perf-analyzer: $(PERF_ANALYZER)

# The default run skips tests marked `slow` (each long drill keeps a short variant in the default run);
# `make test-slow` runs those.
test: setup perf-analyzer
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup perf-analyzer
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

demo: setup
	$(BIN)/tritone demo --out $(OUT) "$(THEME)"

clean:
	rm -rf build artifacts out .pytest_cache
