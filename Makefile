# The two commands a newcomer runs on a fresh machine:
#   make demo   - create .venv from nothing and run the main job on examples/
#   make test   - create .venv and pass the lint and tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= ui,weaviate,dev,openai,llm,postgres,cellpose
OUT    ?= artifacts/demo

.PHONY: venv demo test lint format bench clean

venv: $(VENV)/.installed

# constraints.txt is the lock: every install resolves to the same versions.
$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

demo: venv
	$(BIN)/python examples/make_examples.py
	$(BIN)/litevlm index examples/images
	$(BIN)/litevlm report examples/images --questions examples/questions.yaml --out $(OUT)
	@echo "report: $(OUT)/report.html"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache .ruff_cache
