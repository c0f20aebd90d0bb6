SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQUIREMENTS := $(wildcard requirements/*.txt)
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
GENERATED := libs/generated
PYTEST_ARGS ?=
# The project's own packages (each a pyproject.toml), installed editable: the venv runs this checkout.
PACKAGES := libs/generated libs/common libs/testkit \
	services/gateway services/guardrails services/retrieval services/generation
# A native llama.cpp build (-march=native) on a VM reporting AMX and AVX-512 crashed in ggml-cpu with
# a general protection fault; the portable build (AVX2, as in the model-server image) runs anywhere.
# pip's own cache keys wheels by sdist, not by build flags, so the wheel lives in a folder named by them.
LLAMA_VERSION := $(shell sed -n 's/^llama-cpp-python\[server\]==//p' requirements/model-server.txt)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF
LLAMA_WHEELS := $(HOME)/.cache/llmsuite/wheels/llama-cpp-python-$(LLAMA_VERSION)-portable

.PHONY: help install run lint test test-fast fuzz protos protos-check env-table dashboard console-screenshots eval-retrieval soak clean

help:
	@echo "make run          start the whole suite locally on embedded defaults"
	@echo "make test         install everything and run every test and check"
	@echo "make fuzz         the gateway's HTTP API and every gRPC RPC fuzzed at length (FUZZ_EXAMPLES=2000 per case)"
	@echo "make lint         ruff check, ruff format --check and mypy (part of make test)"
	@echo "make protos       regenerate Python stubs from protos/"
	@echo "make protos-check fail when the committed stubs differ from protos/"
	@echo "make env-table    regenerate the environment-variable table (docs/configuration.md)"
	@echo "make dashboard    drive a traffic mix through the suite and draw docs/dashboard.png"
	@echo "make console-screenshots  run the console's browser tests, saving docs/console/*.png"
	@echo "make eval-retrieval  recall@k and MRR on the labelled set, HNSW vs exact recall"
	@echo "make eval-guardrails injection detection, false positives and CPU cost on public labelled data"
	@echo "make images       build one container image per service (docker/podman/buildah)"
	@echo "make bench        side-by-side performance run (bench/results/)"
	@echo "make soak         the fault harness's mixed load for SOAK_SECONDS (1800): RSS, fds and asyncio tasks stay flat"
	@echo "make manifests    render k8s/manifests from the Helm chart"
	@echo "make k8s-check    validate the chart and manifests offline"

# One stamp per requirements state: editing any requirements file or package pyproject.toml reinstalls.
$(VENV)/.installed: $(REQUIREMENTS) $(PACKAGES:%=%/pyproject.toml)
	@# Rate-limit, idempotency and cache tests run against a real Redis they start themselves.
	@command -v redis-server >/dev/null || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq redis-server; } || \
		echo "note: no redis-server binary; Redis tests use 127.0.0.1:6379 if it answers" >&2
	@# Alert-rule tests run promtool, make dashboard and its tests a Prometheus: Debian's package has both.
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { test "$$(id -u)" = 0 && \
		command -v apt-get >/dev/null && apt-get update -qq -o Acquire::http::Timeout=10 -o Acquire::Retries=0 && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || \
		echo "note: no promtool/prometheus binary; the alert-rule and dashboard tests skip" >&2
	@# The console's browser tests (tests/console) drive Debian's Chromium through Playwright, which
	@# never downloads a browser of its own.
	@command -v chromium >/dev/null || { test "$$(id -u)" = 0 && \
		command -v apt-get >/dev/null && apt-get update -qq -o Acquire::http::Timeout=10 -o Acquire::Retries=0 && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
		echo "note: no chromium binary; the console's browser tests skip" >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	@# llama-cpp-python compiles from source once, into a wheel kept outside the checkout.
	@ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip wheel \
		--no-deps --no-cache-dir -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/python -m pip install --find-links $(LLAMA_WHEELS) -r requirements/dev.txt
	@# Built by requirements/build.txt's setuptools (no build isolation: no index needed); their
	@# dependencies are the ones pinned above. Each pyproject.toml's package-dir makes the editable
	@# install a static .pth path entry, which mypy follows (an import hook it could not).
	$(BIN)/python -m pip install --quiet --no-build-isolation --no-deps $(addprefix -e ,$(PACKAGES))
	@touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python -m tools.localsuite.run

console-screenshots: install
	LLMSUITE_CONSOLE_SCREENSHOTS=docs/console $(BIN)/python -m pytest tests/console -q

dashboard: install
	$(BIN)/python -m tools.dashboard.render

eval-retrieval: install
	$(BIN)/python -m retrieval_service.evaluation --out .run/retrieval-eval.json

env-table: install
	$(BIN)/python -m tools.envtable --write

protos: install
	rm -rf $(GENERATED)/llmsuite
	mkdir -p $(GENERATED)
	$(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=$(GENERATED) --grpc_python_out=$(GENERATED) \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--mypy_out=$(GENERATED) --mypy_grpc_out=$(GENERATED) $(PROTO_FILES)

protos-check: install
	@tmp=$$(mktemp -d) && \
	$(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=$$tmp --grpc_python_out=$$tmp \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTO_FILES) >/dev/null && \
	if diff -r -x __pycache__ $$tmp/llmsuite $(GENERATED)/llmsuite; then echo "protos: generated stubs up to date"; \
	else echo "protos: generated stubs are stale; run 'make protos' and commit" >&2; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp

# The gates: ruff's checks and formatting (pyproject.toml), and mypy, strict on libs/common.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy

test: install protos-check lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@if grep -q '^k8s-check:' k8s/k8s.mk 2>/dev/null; then $(MAKE) --no-print-directory k8s-check; fi

test-fast: install
	$(BIN)/python -m pytest -m "not model" $(PYTEST_ARGS)

# `make test` fuzzes the public surfaces briefly (100 examples per operation and RPC); this runs
# the same tests at length, without the per-test timeout. Another seed: LLMSUITE_FUZZ_SEED=<n>.
FUZZ_EXAMPLES ?= 2000
fuzz: install
	LLMSUITE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/fuzz -o timeout=0 $(PYTEST_ARGS)

# The fault harness alone (make test runs it too); its tables go to .run/faults/results.md.
faults: install
	$(BIN)/python -m pytest tests/faults -s $(PYTEST_ARGS)

# The fault harness's mixed load for SOAK_SECONDS (30 min), each process's RSS, open fds and
# asyncio tasks sampled; fails when one grows past its bound (tests/faults/soak.py, .run/soak/).
SOAK_SECONDS ?= 1800
soak: install
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m tests.faults.soak

clean:
	rm -rf .run .pytest_cache .hypothesis

-include k8s/k8s.mk
-include k8s/images/images.mk
-include bench/bench.mk
-include services/guardrails/eval/eval.mk
