# The course's two commands (see README.md):
#   make course   set up, execute every notebook on real data, write build/ (HTML + report)
#   make test     set up, run the unit tests, then every notebook under nbval
#   make data     fetch every dataset the chapters need into data/, verify every SHA-256
#                 (workshops: then `python -m lmcourse.data pack course-data.tar`; see data/README.md)
#   make lab      JupyterLab on notebooks/ (as root it adds --allow-root); extra flags in ARGS,
#                 e.g. make lab ARGS="--no-browser --port 8899"
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: course test test-offline install offline-data data lab lint benchmark clean

$(STAMP): requirements.txt requirements-nodeps.txt requirements-browser.txt pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet -r requirements-browser.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP) offline-data

# Offline Fashion-MNIST (Debian's dataset-fashion-mnist) when we may install it; otherwise the
# loader downloads the official files instead. Never fails the build.
offline-data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's dataset-fashion-mnist (offline Fashion-MNIST source)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
	  || echo "  could not install it; Fashion-MNIST will be downloaded instead"; \
	fi

course: install
	$(BIN)/python tools/run_course.py

test: install
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest --nbval-lax notebooks

# `make test` with LMCOURSE_OFFLINE=1 in a network namespace without network (after `make data`);
# prints SKIP where `unshare -n` is not permitted. A subset: tools/offline_check.sh tests/test_vader.py
test-offline: install
	PY=$(BIN)/python tools/offline_check.sh tests
	PY=$(BIN)/python tools/offline_check.sh --nbval-lax notebooks

# Everything every chapter needs, fetched once and verified (run it online; then run offline).
data: install
	$(BIN)/python -m lmcourse.data fetch
	$(BIN)/python -m lmcourse.data verify

# Jupyter refuses to run as root without --allow-root (containers, cloud machines).
ARGS ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: install
	$(BIN)/jupyter lab notebooks $(ROOT_FLAG) $(ARGS)

lint: install
	$(BIN)/ruff check .

benchmark: install
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/cnn_train_speed.py

clean:
	rm -rf build .pytest_cache
