# Included from the root Makefile. `make bench` writes bench/results/latest.{md,json,png}.
# Knobs are BENCH_* environment variables (see bench/config.py), e.g. BENCH_QUICK=1 or BENCH_ROUNDS=3.

BENCH_PY ?= .venv/bin/python
BENCH_LITELLM_VENV ?= bench/.venvs/litellm

.PHONY: bench bench-quick bench-soak bench-deps

# LiteLLM lives in its own venv so that its pins never touch the project's.
$(BENCH_LITELLM_VENV)/.installed: bench/requirements-litellm.txt bench/constraints-litellm.txt | install
	$(shell $(BENCH_PY) -c 'import sys; print(sys._base_executable)') -m venv $(BENCH_LITELLM_VENV)
	$(BENCH_LITELLM_VENV)/bin/pip install -q -r bench/requirements-litellm.txt -c bench/constraints-litellm.txt
	touch $@

.venv/.bench-installed: bench/requirements.txt | install
	$(BENCH_PY) -m pip install -q -r bench/requirements.txt
	touch $@

# `install` is the root Makefile's: the project's .venv must exist first.
bench-deps: install $(BENCH_LITELLM_VENV)/.installed .venv/.bench-installed

bench: bench-deps
	$(BENCH_PY) -m bench

bench-quick: bench-deps
	BENCH_QUICK=1 BENCH_RUN_NAME=quick $(BENCH_PY) -m bench

# The 10-minute soak of the llmsuite chain alone; writes bench/results/soak.{md,json}.
bench-soak: bench-deps
	BENCH_RUN_NAME=soak BENCH_TARGETS='["llmsuite"]' BENCH_SUITES='["soak"]' \
	BENCH_SOAK_SECONDS=600 BENCH_SOAK_WARMUP_SECONDS=60 \
	$(BENCH_PY) -m bench
