# Every target creates the virtual environment on first use, from the pinned lock file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := $(VENV)/.tools
MINISTACK := $(VENV)/ministack
MINISTACK_STAMP := $(MINISTACK)/.installed

.PHONY: demo demo-gcp local local-gcp test lint typecheck unit bench bench-e2e bench-encoders chaos chaos-gcp clean lint-deploy venv

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# MiniStack, the tests' second AWS emulator, in an environment of its own (its botocore pin and
# aiobotocore's exclude each other); tests/ministack.py runs it.
$(MINISTACK_STAMP): requirements-ministack.lock | $(STAMP)
	$(PYTHON) -m venv $(MINISTACK)
	$(MINISTACK)/bin/pip install --quiet --upgrade pip
	$(MINISTACK)/bin/pip install --quiet -r requirements-ministack.lock
	touch $(MINISTACK_STAMP)

# Debian's tesseract (OCR, with English and German) and Prometheus (the metrics test), on first use.
$(TOOLS): deploy/test-tools.sh | $(STAMP)
	bash deploy/test-tools.sh $(BIN)
	touch $(TOOLS)

demo: $(STAMP) $(TOOLS)
	$(BIN)/pipelined demo

# The same on Google Cloud's emulators: Pub/Sub and Firestore (Java, from the Cloud SDK's
# components) and fake-gcs-server (from its wheel).
demo-gcp: $(STAMP) $(TOOLS)
	$(BIN)/pipelined demo --backend gcp

local: $(STAMP) $(TOOLS)
	$(BIN)/pipelined local

local-gcp: $(STAMP) $(TOOLS)
	$(BIN)/pipelined local --backend gcp

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The test files spread over TEST_WORKERS processes, each with its own emulators; a file's tests
# stay together in one of them, so its module fixtures are set up once.
TEST_WORKERS ?= 2

unit: $(STAMP) $(TOOLS) $(MINISTACK_STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

test: lint typecheck unit lint-deploy

# The long chaos run: 200 uploads, 20 daemon kills, 10 minutes of injected faults; exits non-zero
# on any loss or duplicate. A short form of it runs in make test.
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --files 200 --kills 20 --duration 600

# The same on the embedded Google Cloud stack: SIGKILLs, SIGTERM restarts and duplicate bucket
# notifications (no network faults: the fault proxy speaks HTTP, Pub/Sub and Firestore gRPC).
chaos-gcp: $(STAMP)
	$(BIN)/python bench/chaos.py --backend gcp --files 200 --kills 20 --duration 600

bench: $(STAMP)
	$(BIN)/pip install --quiet pyvips==3.2.0 pyvips-binary==8.18.7
	$(BIN)/python bench/images.py
	$(BIN)/python bench/pdf_text_engines.py
	$(BIN)/python bench/soak_memory.py
	$(BIN)/python bench/isolation.py

# The daemon end to end on the embedded stack, against a Lambda-shaped loop and the processors
# alone, with the targets beside the figures (docs/performance.md); writes e2e-results.json.
# BENCH_ARGS=--quick for a short run; the emulator is MiniStack (BENCH_ARGS="--emulator moto").
bench-e2e: $(STAMP) $(MINISTACK_STAMP)
	$(BIN)/pip install --quiet py-spy==0.4.3  # for --profile only
	$(BIN)/python bench/e2e.py $(BENCH_ARGS)

# Encoder effort against size and quality (WebP methods, AVIF speeds): at today's quality, then
# AVIF at the quality that matches WebP's (docs/performance.md); writes two JSON files.
bench-encoders: $(STAMP)
	$(BIN)/python bench/encoders.py $(BENCH_ARGS)
	$(BIN)/python bench/encoders.py --avif-quality 60 --avif-speeds 4-10 \
		--out encoders-avif-q60.json $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Deployment artifacts: validators live in their own environment (see deploy/lint.sh).
lint-deploy:
	bash deploy/lint.sh
