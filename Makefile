# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0

.PHONY: venv demo test bench clean

venv: $(VENV)/.installed

# torch first, pinned: on a machine with an NVIDIA driver, PyPI's default (CUDA) build, ignoring
# any local wheel mirror; elsewhere the plain pin (a CPU build where one is provided locally).
$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(BIN)/python -m pip install --quiet --isolated torch==$(TORCH_VERSION); \
	else \
		$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION); \
	fi
	$(BIN)/python -m pip install --quiet -e ".[dev,distributed]"
	$(BIN)/python -c "import torch; print('torch', torch.__version__, 'CUDA available:', torch.cuda.is_available())"
	touch $@

demo: venv
	$(BIN)/rl-coordconv demo

# Two pytest-xdist workers, one per core; the tests that start Ray share one of them.
test: venv
	$(BIN)/python -m pytest -n 2 --dist loadgroup

bench: venv
	$(BIN)/python scripts/bench_layers.py
	$(BIN)/python scripts/bench_envs.py
	$(BIN)/python scripts/bench_train.py --profile
	$(BIN)/python scripts/bench_distributed.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
