# consis: `make book` builds the whole companion, `make test` runs the test suite.
# Both install what is missing first (Python packages into the current interpreter,
# Debian fonts and Chromium when run as root, the widget JavaScript via npm ci).

PYTHON ?= python3
PROFILE ?= default
PYTEST_ARGS ?=

.PHONY: setup setup-python setup-system setup-js test test-slow book book-smoke bench bench-gpu clean

setup: setup-system setup-python setup-js

setup-python:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[book,test]'

# Sprite fonts for the embedded data set and a browser for the explorer test.
setup-system:
	@bash tools/setup_system.sh

setup-js:
	@if [ -f package-lock.json ]; then \
	  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then npm ci --no-audit --no-fund --silent; fi; \
	fi

test: setup
	$(PYTHON) tools/run_pytest.py -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(PYTHON) tools/run_pytest.py -m slow $(PYTEST_ARGS)

book: setup
	$(PYTHON) -m consis_lib reproduce --profile $(PROFILE)

book-smoke: setup
	$(PYTHON) -m consis_lib reproduce --profile smoke

CPU_BENCHMARKS := $(filter-out benchmarks/gpu_%.py,$(wildcard benchmarks/*.py))

# The goals in the benchmarks' docstrings are set on a 2-core CPU.
bench: setup
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	@for b in $(CPU_BENCHMARKS); do echo "== $$b"; $(PYTHON) $$b || exit 1; done

# On a machine with an NVIDIA GPU: paper-scale throughput, the CUDA training path,
# and the CPU benchmarks' step and attack ratios on the GPU.
bench-gpu: setup
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	@for b in benchmarks/gpu_*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done
	$(PYTHON) benchmarks/adv_step.py --device cuda
	$(PYTHON) benchmarks/fgsm_speed.py --device cuda

clean:
	rm -rf runs notebooks/runs book/_build
