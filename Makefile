# recsvc — common tasks. `make help` lists them.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DATA ?= var/demo-data
ARTIFACTS ?= artifacts
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1


.PHONY: system-deps help setup admin-token demo demo-data demo-build serve test test-fast lint format bench bench-dense bench-modes bench-beam bench-genrec-train clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/' | column -t -s $$'\t'

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	# torch first, pinned: the CPU build on this machine; a loose pin pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed  ## create .venv and install recsvc with dev tools

$(DEMO_DATA)/items.jsonl: | $(VENV)/.installed
	$(BIN)/python -m training.data.demo --out $(DEMO_DATA)

# The stamp makes a second `make demo` reuse the artifacts it built before; a changed demo config
# rebuilds them. The build log (stage times) is kept in var/demo-build.log.
DEMO_CONFIG ?= training/configs/demo.yaml
var/.demo-built: $(DEMO_DATA)/items.jsonl $(DEMO_CONFIG)
	@mkdir -p var
	@# PASSIVE: idle OpenMP threads sleep instead of spinning. On a busy 2-core machine a spinning torch
	@# thread steals the core its partner needs: an RQ-VAE step took 3.1-3.9 s spinning, 0.08-0.16 s passive.
	set -o pipefail; OMP_WAIT_POLICY=PASSIVE $(BIN)/recsvc-train build --data $(DEMO_DATA) --out $(ARTIFACTS) \
	  --name demo --config $(DEMO_CONFIG) 2>&1 | tee var/demo-build.log
	touch $@

demo-data: setup $(DEMO_DATA)/items.jsonl  ## generate the seeded synthetic demo dataset

demo-build: setup var/.demo-built  ## build demo artifacts (encoder, text vectors, seqrec, semantic IDs, genrec) and the Qdrant index

# The demo's admin token: a random secret only its owner can read (0600, also fixed on a file made before).
ADMIN_TOKEN_FILE ?= var/admin-token
$(ADMIN_TOKEN_FILE):
	@mkdir -p $(@D)
	@(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > $@)

admin-token: $(ADMIN_TOKEN_FILE)  ## create var/admin-token (random, mode 0600) if missing
	@chmod 600 $(ADMIN_TOKEN_FILE)

demo: demo-build admin-token  ## set up, build the demo and serve it on http://$(HOST):$(PORT)
	RECSVC_ADMIN_TOKEN=$${RECSVC_ADMIN_TOKEN:-$$(cat $(ADMIN_TOKEN_FILE))} \
	  $(BIN)/recsvc-serve --host $(HOST) --port $(PORT)

serve: setup  ## serve the latest artifact set
	$(BIN)/recsvc-serve --host $(HOST) --port $(PORT)

system-deps:  ## redis-server for the integration tests (apt, when missing)
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then S=""; else S="sudo"; fi; \
	  $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq redis-server; }

test: setup system-deps  ## set up and run every test (unit, api, parity, integration)
	@# pytest exit 5 means no tests were collected: that is a failure, not green.
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: setup  ## unit + api tests only
	$(BIN)/python -m pytest -q -m "not slow and not integration"

lint: setup  ## ruff (incl. complexity: mccabe 15, 60 statements) + mypy + import contracts
	$(BIN)/ruff check service training benchmarks tests recsvc_client
	$(BIN)/ruff format --check service training benchmarks tests recsvc_client
	$(BIN)/mypy service training benchmarks recsvc_client
	$(BIN)/lint-imports --no-cache  # the import contracts of .importlinter (jobs never import jobs)

format: setup
	$(BIN)/ruff format service training benchmarks tests recsvc_client
	$(BIN)/ruff check --fix service training benchmarks tests recsvc_client

bench: setup  ## print the embed benchmark (torch vs ONNX fp32 vs int8)
	$(BIN)/python -m benchmarks.embed

bench-dense: demo-build  ## POST /recommend latency: model alone vs + transition prior vs + a new item in the history
	$(BIN)/python -m benchmarks.dense_latency --artifacts artifacts

bench-modes: demo-build  ## POST /recommend p50/p95/p99 at 1 client: dense vs generative vs hybrid (ratios, load average)
	$(BIN)/python -m benchmarks.mode_latency --artifacts $(ARTIFACTS)

clean:
	rm -rf var $(ARTIFACTS) .pytest_cache .mypy_cache .ruff_cache

SEQREC_DATA ?= ../shared/data/Beauty
SEQREC_CONFIG ?= training/configs/seqrec/beauty.yaml
results-seqrec: setup  ## sequential models on SEQREC_DATA -> docs/results/seqrec.{json,png} + docs/RESULTS.md
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/recsvc-train bench-seqrec --data $(SEQREC_DATA) --config $(SEQREC_CONFIG) --threads 1 --update-docs

SEQREC_ALL ?= Beauty:beauty Sports:sports ml-100k:ml-100k Scientific:scientific
results-seqrec-all: setup  ## the whole seqrec table: every dataset of SEQREC_ALL with its config (hours on 2 cores)
	@set -e; for pair in $(SEQREC_ALL); do \
	  ds=$${pair%%:*}; conf=$${pair##*:}; \
	  echo "== bench-seqrec $$ds (training/configs/seqrec/$$conf.yaml)"; \
	  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/recsvc-train bench-seqrec --data ../shared/data/$$ds \
	    --config training/configs/seqrec/$$conf.yaml --threads 1 --update-docs; \
	done

results-render: setup  ## rebuild every section of docs/RESULTS.md and its plots from docs/results/*.json
	$(BIN)/recsvc-train report

bench-beam:  ## batched constrained beam search vs HF generate + prefix_allowed_tokens_fn -> docs/results/generative_beam.json
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m benchmarks.beam --json --threads 1 --out docs/results/generative_beam.json --results-md docs/RESULTS.md
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m benchmarks.beam --json --threads 1 --history-input items --out docs/results/generative_beam.json --results-md docs/RESULTS.md

bench-genrec-train:  ## genrec training steps/s: one encoder position per sid token (TIGER) vs per item, same batches
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m benchmarks.genrec_train --threads 1 --config training/configs/genrec_beauty.yaml

GENREC_DATA ?= ../shared/data/Beauty
GENREC_CONFIG ?= training/configs/genrec_beauty.yaml
GENREC_ARGS ?= --cf-dim 64
results-genrec: setup  ## semantic IDs + generative model on GENREC_DATA -> docs/results/generative.json + docs/RESULTS.md
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/recsvc-train bench-genrec --data $(GENREC_DATA) --config $(GENREC_CONFIG) --threads 1 $(GENREC_ARGS)

demo-build-profile: setup $(DEMO_DATA)/items.jsonl  ## build the demo with user profiles (POST /recommend takes `profile`; docs/OPERATIONS.md §8)
	$(BIN)/recsvc-train build --data $(DEMO_DATA) --out $(ARTIFACTS) --name demo-profile --config training/configs/demo_profile.yaml
