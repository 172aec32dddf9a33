# The course's two commands (see README.md):
#   make course   set up, execute every notebook on real data, write build/ (HTML + report)
#   make test     set up, run the unit tests, then every notebook under nbval
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: course test install offline-data lab lint benchmark clean

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
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

lab: install
	$(BIN)/jupyter lab notebooks

lint: install
	$(BIN)/ruff check .

benchmark: install
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/cnn_train_speed.py

clean:
	rm -rf build .pytest_cache
