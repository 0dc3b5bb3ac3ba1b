# kdspec: the everyday commands. `make run` and `make test` work on a fresh clone: both install
# what is missing first (a .venv here, plus Debian's Fashion-MNIST and Chromium when run as root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SPEC ?= specs/quickstart.kdspec
TRACKING_URI ?= sqlite:///mlruns.db
PYTEST_ARGS ?=
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: all install test test-fast lint run report ui bench bench-gpu bench-data bench-report clean

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

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

lint: install
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

bench-data: install
	$(BIN)/python bench/bench_data.py

bench-report: install
	$(BIN)/python bench/bench_report.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
