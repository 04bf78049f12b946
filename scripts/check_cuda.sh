#!/usr/bin/env bash
# The CUDA checks, in one short run on a GPU machine (~8 minutes): GPU tests, a few thousand A2C
# and Ape-X steps on the GPU, and the benchmarks with --device cuda. Output goes to stdout and, when $OUT is
# set, to $OUT/cuda_check.log.
set -euo pipefail
cd "$(dirname "$0")/.."
log=${OUT:-/tmp}/cuda_check.log
{
  make venv
  .venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.cuda.get_device_name())"
  .venv/bin/python -m pytest -q -m gpu tests
  .venv/bin/python scripts/train.py --game MsPacman --arch coordconv --timesteps 4000 --device cuda \
    --runs "$(mktemp -d)" --set eval_episodes=2 --no-progress
  .venv/bin/python scripts/train.py --game MsPacman --agent apex --arch coordconv --timesteps 12000 --device cuda \
    --runs "$(mktemp -d)" --set apex.buffer_size=20000 --set apex.learning_starts=5000 --set eval_episodes=2 --no-progress
  .venv/bin/python scripts/train.py --game MsPacman --agent apex --arch coordconv --timesteps 12000 --device cuda \
    --distributed --actors 8 --runs "$(mktemp -d)" --set apex.n_envs=16 --set apex.buffer_size=40000 \
    --set apex.learning_starts=5000 --set eval_episodes=2 --no-progress
  .venv/bin/python scripts/bench_distributed.py --device cuda --batch 512 --steps 40000 --actors 1,4,8,15
  .venv/bin/python scripts/bench_layers.py --device cuda --rounds 11
  .venv/bin/python scripts/bench_train.py --device cuda --rounds 3 --steps 2000
  .venv/bin/python scripts/bench_train.py --agent apex --device cuda --rounds 3 --steps 4096
  .venv/bin/python scripts/supervised.py --split quadrant --model coordconv --device cuda --out "$(mktemp -d)"
} 2>&1 | tee "$log"
