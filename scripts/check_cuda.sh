#!/usr/bin/env bash
# The CUDA checks, in one short run on a GPU machine (~6 minutes): the GPU tests, a few thousand
# Ape-X and A2C steps on the GPU, the benchmarks with --device cuda, and a supervised run. Output
# goes to stdout and, when $OUT is set, to $OUT/cuda_check.log.
#
#   scripts/check_cuda.sh                   # makes .venv first (make venv: a CUDA torch)
#   PYTHON=python3 scripts/check_cuda.sh    # a machine without package registries: that
#                                           # interpreter, with the packages installed beside it
#
# The distributed runs need Ray; where it is not installed they are skipped, and the log says so.
set -euo pipefail
cd "$(dirname "$0")/.."
log=${OUT:-/tmp}/cuda_check.log
if [ -z "${PYTHON:-}" ]; then
  make venv
  PYTHON=.venv/bin/python
fi
runs=$(mktemp -d)
{
  $PYTHON -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name())"
  $PYTHON -m pytest -q -m gpu tests/test_layers.py
  $PYTHON scripts/bench_train.py --agent apex --device cuda --rounds 3 --steps 4096
  $PYTHON scripts/train.py --game MsPacman --agent apex --arch coordconv --timesteps 12000 --device cuda \
    --runs "$runs" --set apex.buffer_size=20000 --set apex.learning_starts=5000 --set eval_episodes=2 --no-progress
  $PYTHON scripts/train.py --game MsPacman --arch coordconv --timesteps 4000 --device cuda \
    --runs "$runs" --set eval_episodes=2 --no-progress
  ls -R "$runs" | head -40
  $PYTHON scripts/bench_layers.py --device cuda --rounds 11
  $PYTHON scripts/bench_train.py --device cuda --rounds 3 --steps 2000
  $PYTHON scripts/supervised.py --split quadrant --model coordconv --device cuda --out "$(mktemp -d)"
  # Detection: torchvision loads beside a CUDA torch from PyPI, so no second venv is needed here.
  if $PYTHON -c "import torchvision.models.detection" 2>/dev/null; then
    $PYTHON scripts/supervised.py --experiment detection --seeds 1 --epochs 2 --device cuda --out "$(mktemp -d)"
  else
    echo "torchvision is not installed: the detection run is skipped (pip install torchvision==0.28.0)"
  fi
  if $PYTHON -c "import ray" 2>/dev/null; then
    $PYTHON scripts/train.py --game MsPacman --agent apex --arch coordconv --timesteps 12000 --device cuda \
      --distributed --actors 8 --runs "$(mktemp -d)" --set apex.n_envs=16 --set apex.buffer_size=40000 \
      --set apex.learning_starts=5000 --set eval_episodes=2 --no-progress
    $PYTHON scripts/bench_distributed.py --device cuda --batch 512 --steps 40000 --actors 1,4,8,15
  else
    echo "Ray is not installed: the distributed runs are skipped"
  fi
} 2>&1 | tee "$log"
