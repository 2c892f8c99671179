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

# Until `optsearch evolve` lands, the demo walks the rest of the pipeline: a zoo program is
# checked, scored against tuned AdamW on two fast proxy tasks, and exported as PyTorch code.
demo: install
	$(VENV)/bin/optsearch check lion
	$(VENV)/bin/optsearch eval adamw --task quadratic --task mlp --threads 1
	$(VENV)/bin/optsearch eval lion --task quadratic --task mlp --threads 1
	$(VENV)/bin/optsearch export lion -o runs/demo/lion_optimizer.py --class-name Lion

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/export_step_time.py
	$(PY) benchmarks/evaluator_speed.py
	$(PY) benchmarks/zoo_eval.py

clean:
	rm -rf $(VENV) build *.egg-info
