# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
# The torchvision release built against TORCH_VERSION.
TORCHVISION_VERSION := 0.28.0
DETECTION_VENV := .venv-detection

.PHONY: venv detection-venv demo test bench clean

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

detection-venv: $(DETECTION_VENV)/.installed

# The detection experiment's own venv: torchvision's wheels are built against PyPI's torch (a CUDA
# build, which runs on CPU too), and a local CPU-only torch of the same version cannot load them.
# Where pip finds the pair LOCAL_DETECTION_TORCH as files on this machine, it takes them (no
# download); elsewhere PyPI's torch $(TORCH_VERSION) and its torchvision, about 3 GB.
LOCAL_DETECTION_TORCH := torch==2.14.1 torchvision==0.29.1
ON_DISK := import json, sys; sys.exit(not all(item["download_info"]["url"].startswith("file:") for item in json.load(sys.stdin)["install"]))
$(DETECTION_VENV)/.installed: setup.py
	$(PYTHON) -m venv $(DETECTION_VENV)
	$(DETECTION_VENV)/bin/python -m pip install --quiet --upgrade pip
	if $(DETECTION_VENV)/bin/python -m pip install --dry-run --no-deps --ignore-installed --quiet --report - \
			$(LOCAL_DETECTION_TORCH) 2>/dev/null | $(DETECTION_VENV)/bin/python -c '$(ON_DISK)' 2>/dev/null; then \
		$(DETECTION_VENV)/bin/python -m pip install --quiet $(LOCAL_DETECTION_TORCH); \
	else \
		$(DETECTION_VENV)/bin/python -m pip install --quiet --isolated torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION); \
	fi
	$(DETECTION_VENV)/bin/python -m pip install --quiet -e ".[dev,detection]"
	$(DETECTION_VENV)/bin/python -c "import torchvision.models.detection; print('torchvision', torchvision.__version__)"
	touch $@

demo: venv
	$(BIN)/rl-coordconv demo

# ruff (ruff.toml), then two pytest-xdist workers, one per core; the tests that start Ray share
# one of them. The detection tests skip in .venv, where torchvision cannot load, and run in
# .venv-detection.
test: venv detection-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup
	$(DETECTION_VENV)/bin/python -m pytest -n 2 tests/test_detection.py

bench: venv
	$(BIN)/python scripts/bench_layers.py
	$(BIN)/python scripts/bench_envs.py
	$(BIN)/python scripts/bench_train.py --profile
	$(BIN)/python scripts/bench_distributed.py

clean:
	rm -rf $(VENV) $(DETECTION_VENV) *.egg-info .pytest_cache
