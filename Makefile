# kdspec: the everyday commands. `make run` and `make test` work on a fresh clone: both install
# what is missing first (a .venv here, plus Debian's Fashion-MNIST and Chromium when run as root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SPEC ?= specs/quickstart.kdspec
TRACKING_URI ?= sqlite:///mlruns.db
PYTEST_ARGS ?=
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: all install install-text test test-extended test-fast test-cluster test-recipes lint run report ui bench bench-gpu gpu-check bench-data bench-report bench-claims clean

all: lint test

# The stamp is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		need=""; \
		[ -d /usr/share/datasets/fashion-mnist ] || need="$$need dataset-fashion-mnist"; \
		command -v chromium >/dev/null || need="$$need chromium"; \
		if [ -n "$$need" ]; then \
			echo "installing Debian packages:$$need"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
		fi; \
	else \
		echo "not root: skipping Debian packages (dataset-fashion-mnist, chromium); tests that need them skip"; \
	fi
	touch $@

install: $(VENV)/.installed

# The text extra (transformers) only for the tests: `make run` does not need it.
$(VENV)/.installed-text: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,text]'
	touch $@

install-text: $(VENV)/.installed-text

test: install-text
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# What make test leaves out to stay near 10 minutes on 2 cores (CI runs it too): more
# multi-process and data-parallel runs, the browser tests of the MLflow UI, a report through a
# server, a lost server, the example plugin, the text study and the 10,000-spec fuzz.
test-extended: install-text
	$(BIN)/python -m pytest -m extended $(PYTEST_ARGS)

test-fast: install-text
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

# kdspec init's recipes, one model of each architecture family trained as init writes it
# (digits; a few minutes on 2 cores): every run above chance, the students distilled at T = 10.
test-recipes: install
	$(BIN)/python -m pytest -m recipes tests/commands/test_init_recipes.py $(PYTEST_ARGS)

# Slurm array jobs against an MLflow server on PostgreSQL, all on this machine (tests/cluster):
# as root, installs Debian's postgresql, slurm-wlm, slurm-client and munge first (~15 s).
test-cluster: install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		need=""; \
		for p in postgresql slurm-wlm slurm-client munge; do \
			dpkg -s $$p >/dev/null 2>&1 || need="$$need $$p"; \
		done; \
		if [ -n "$$need" ]; then \
			echo "installing Debian packages:$$need"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends $$need; \
		fi; \
	fi
	$(BIN)/python -m pytest -m cluster tests/cluster $(PYTEST_ARGS)

lint: install-text
	$(BIN)/ruff check kdspec tests bench examples
	$(BIN)/mypy

run: install
	$(BIN)/kdspec run $(SPEC) --tracking-uri $(TRACKING_URI)
	$(BIN)/kdspec report $(SPEC) --tracking-uri $(TRACKING_URI)

report: install
	$(BIN)/kdspec report $(SPEC) --tracking-uri $(TRACKING_URI)

ui: install
	@echo "MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning ('Model training' in the header: the runs tables)"
	$(BIN)/mlflow ui --backend-store-uri $(TRACKING_URI) --host 127.0.0.1 --port 5000

bench: install
	$(BIN)/python bench/bench_distillation.py

# The paper-shaped study (synthetic CIFAR-shaped data, ResNet-56 -> ResNet-20) on CUDA; on a
# machine without a GPU: make bench-gpu BENCH_ARGS="--device cpu --quick" (its smoke test).
bench-gpu: install
	$(BIN)/python bench/bench_distillation.py --paper-shaped --device cuda --workers 8 $(BENCH_ARGS)

# The GPU check (docs/speed.md, "Checking a GPU machine"): the GPU suite, the fair benchmark and
# a study end to end, one summary in gpu-check/. No pip and no network (the device machine has
# none): on a bare GPU machine install the wheels first. GPU_CHECK_ARGS="--quick" (under 3 min),
# or "--cpu" (the CPU mode CI runs).
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	$(GPU_PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)

bench-data: install
	$(BIN)/python bench/bench_data.py

bench-report: install
	$(BIN)/python bench/bench_report.py

# The claims' error rates, power and interval coverage on simulated studies (~1 h on 2 cores).
bench-claims: install
	$(BIN)/python bench/bench_claims.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
