# Two entry points on a fresh machine:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0   # CPU build first; an unpinned torch pulls CUDA
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(PY) scripts/demo.py

lint: install
	$(VENV)/bin/ruff check polymodal tests scripts benchmarks
	$(VENV)/bin/ruff format --check polymodal tests scripts benchmarks
	$(VENV)/bin/mypy

test: lint
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest
