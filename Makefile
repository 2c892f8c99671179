# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

# torch is installed before the project so that a CPU build already on this machine's disk
# (pip's find-links folder) is used instead of a multi-GB CUDA download. Override with
# `make test TORCH='torch>=2.2'` (or any spec); the project itself only asks for torch>=2.2.
LOCAL_TORCH := $(firstword $(wildcard /opt/wheels/torch-*+cpu-*.whl))
TORCH  ?= $(if $(LOCAL_TORCH),$(LOCAL_TORCH),torch>=2.2)

.PHONY: demo test install clean bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The demo is a real search (configs/quickstart.yaml, about 5 minutes on 2 cores): evolve from
# AdamW on the small MLP task, re-check the best on held-out tasks, export the winner. It starts
# afresh each time (the previous demo run in runs/quickstart is replaced).
demo: install
	rm -rf runs/quickstart
	$(VENV)/bin/optsearch evolve configs/quickstart.yaml
	$(VENV)/bin/optsearch show runs/quickstart --top 5

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/rediscovery.py
	$(PY) benchmarks/ray_speed.py
	$(PY) benchmarks/export_step_time.py
	$(PY) benchmarks/evaluator_speed.py
	$(PY) benchmarks/zoo_eval.py

clean:
	rm -rf $(VENV) build *.egg-info
