#!/usr/bin/env bash
# The CUDA checks, in one run on a GPU machine: the GPU tests, a few thousand Ape-X and A2C steps
# on the GPU, the benchmarks with --device cuda (the sweep's packing of runs per GPU among them), a
# packed sweep, the supervised and detection runs, and the Ray runs. Each step runs on its own: one
# that fails or is skipped does not stop the next. A table at the end says how each step ended
# (pass; fail, with its exit status; skip, with the reason), and the exit status is 1 when any
# step failed. Output goes to stdout and to ${OUT:-/tmp}/cuda_check.log.
#
#   scripts/check_cuda.sh                   # makes .venv first (make venv: a CUDA torch)
#   PYTHON=python3 scripts/check_cuda.sh    # a machine without package registries: that
#                                           # interpreter, with the packages installed beside it
#   scripts/check_cuda.sh --dry-run         # list the steps and their commands, run nothing
#
# The detection run needs torchvision, torchmetrics and pycocotools, which make venv leaves out:
# in .venv, on a machine with an NVIDIA driver (where .venv has PyPI's torch), the script installs
# them, torchvision at the Makefile's pin (the release built against its torch); elsewhere the
# run is skipped unless they import. The Ray runs are skipped where Ray does not import.
set -uo pipefail  # no -e: a failing step is recorded and the next one runs
cd "$(dirname "$0")/.."

dry_run=0
case "${1:-}" in
  "") ;;
  --dry-run) dry_run=1 ;;
  *) echo "error: unknown argument '$1'; use --dry-run or nothing" >&2; exit 2 ;;
esac

own_venv=0
if [ -z "${PYTHON:-}" ]; then
  own_venv=1
  PYTHON=.venv/bin/python
fi
TORCHVISION_VERSION=$(sed -n 's/^TORCHVISION_VERSION := //p' Makefile)
work=$(mktemp -d -t cuda_check.XXXXXX)  # run directories and outputs of every step
mkdir -p "$work/runs"
if (( dry_run )); then
  trap 'rm -r "$work"' EXIT
fi

names=() results=() notes=()

# record NAME RESULT NOTE: one row of the summary.
record() {
  names+=("$1")
  results+=("$2")
  notes+=("$3")
}

# shown COMMAND...: the command on one line, the arguments that need it quoted.
shown() {
  local arg line=()
  for arg; do
    [[ $arg =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]] || arg=${arg@Q}
    line+=("$arg")
  done
  echo "${line[*]}"
}

# missing_modules MODULE...: the modules $PYTHON cannot import, space-separated.
missing_modules() {
  local module missing=()
  for module; do
    "$PYTHON" -c "import $module" >/dev/null 2>&1 || missing+=("$module")
  done
  echo "${missing[*]}"
}

# step NAME [--needs "MODULE..."] [--skip REASON] COMMAND...: run COMMAND and record pass or fail
# (its exit status); record skip instead when REASON is not empty or a module does not import.
# With --dry-run, list the step and run nothing.
step() {
  local name=$1 needs="" skip="" missing status start
  shift
  while true; do
    case $1 in
      --needs) needs=$2; shift 2 ;;
      --skip) skip=$2; shift 2 ;;
      *) break ;;
    esac
  done
  if (( dry_run )); then
    printf '%-22s %s\n' "$name" "$(shown "$@")${needs:+  [needs: $needs]}${skip:+  [skipped: $skip]}"
    return
  fi
  if [ -z "$skip" ] && [ -n "$needs" ]; then
    missing=$(missing_modules $needs)
    [ -z "$missing" ] || skip="$PYTHON cannot import $missing"
  fi
  echo
  if [ -n "$skip" ]; then
    echo "=== $name: skipped: $skip"
    record "$name" skip "$skip"
    return
  fi
  echo "=== $name: $(shown "$@")"
  start=$SECONDS
  status=0
  "$@" || status=$?
  if (( status == 0 )); then
    record "$name" pass "$((SECONDS - start)) s"
  else
    record "$name" fail "exit $status after $((SECONDS - start)) s"
  fi
}

# summary: the table of every step; fails when a step failed.
summary() {
  local index passed=0 failed=0 skipped=0
  echo
  echo "=== summary"
  printf '%-22s %-6s %s\n' step result note
  for index in "${!names[@]}"; do
    printf '%-22s %-6s %s\n' "${names[index]}" "${results[index]}" "${notes[index]}"
    case ${results[index]} in
      pass) passed=$((passed + 1)) ;;
      fail) failed=$((failed + 1)) ;;
      skip) skipped=$((skipped + 1)) ;;
    esac
  done
  echo "$passed passed, $failed failed, $skipped skipped"
  (( failed == 0 ))
}

main() {
  if (( own_venv )); then
    if (( dry_run )); then
      printf '%-22s %s\n' setup "make venv"
    elif ! make venv; then
      echo "error: make venv failed, so no step can run" >&2
      return 1
    fi
  fi
  local install_skip=""
  if (( ! own_venv )); then
    install_skip="PYTHON is set: install torchvision==$TORCHVISION_VERSION torchmetrics pycocotools beside it"
  elif ! nvidia-smi -L >/dev/null 2>&1; then
    install_skip="no NVIDIA driver: .venv has a CPU torch, which PyPI's torchvision cannot load (make detection-venv)"
  fi
  local packed_sweep=(--games MsPacman --archs conv,coordconv --seeds 0-1 --timesteps 4000 --device cuda
                      --runs-per-gpu 4 --runs "$work/packed-sweep" --set eval_episodes=0)

  step cuda "$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "torch sees no CUDA GPU"; print(torch.__version__, torch.cuda.get_device_name())'
  # TF32 off (cuBLAS and cuDNN): the tests compare float32 on CUDA with the CPU at float32 tolerances.
  step gpu-tests env NVIDIA_TF32_OVERRIDE=0 "$PYTHON" -m pytest -q -m gpu tests
  step apex-bench "$PYTHON" scripts/bench_train.py --agent apex --device cuda --rounds 3 --steps 4096
  step apex-train "$PYTHON" scripts/train.py --game MsPacman --agent apex --arch coordconv --timesteps 12000 \
    --device cuda --runs "$work/runs" --set apex.buffer_size=20000 --set apex.learning_starts=5000 \
    --set eval_episodes=2 --no-progress
  step a2c-train "$PYTHON" scripts/train.py --game MsPacman --arch coordconv --timesteps 4000 --device cuda \
    --runs "$work/runs" --set eval_episodes=2 --no-progress
  step run-directories ls -R "$work/runs"
  step bench-layers "$PYTHON" scripts/bench_layers.py --device cuda --rounds 11
  step bench-layers-bf16 "$PYTHON" scripts/bench_layers.py --device cuda --rounds 11 --precision bf16
  step bench-layers-memory-format "$PYTHON" scripts/bench_layers.py --device cuda --rounds 11 --memory-format --precision bf16
  step bench-train "$PYTHON" scripts/bench_train.py --device cuda --rounds 3 --steps 2000 --precision fp32,bf16
  step apex-learner-bench "$PYTHON" scripts/bench_train.py --agent apex-learner --device cuda --rounds 5 --precision fp32,bf16
  step bench-sweep "$PYTHON" scripts/bench_sweep.py --device cuda --runs 1,4,8
  step packed-sweep-dry-run "$PYTHON" scripts/sweep.py "${packed_sweep[@]}" --dry-run
  step packed-sweep "$PYTHON" scripts/sweep.py "${packed_sweep[@]}"
  step supervised "$PYTHON" scripts/supervised.py --split quadrant --model coordconv --device cuda \
    --out "$work/supervised"
  step detection-packages --skip "$install_skip" "$PYTHON" -m pip install --quiet --isolated \
    "torchvision==$TORCHVISION_VERSION" torchmetrics pycocotools
  step detection --needs "torchvision.models.detection torchmetrics pycocotools" \
    "$PYTHON" scripts/supervised.py --experiment detection --seeds 1 --epochs 2 --device cuda --out "$work/detection"
  step ray-apex-train --needs ray "$PYTHON" scripts/train.py --game MsPacman --agent apex --arch coordconv \
    --timesteps 12000 --device cuda --distributed --actors 8 --runs "$work/ray-runs" --set apex.n_envs=16 \
    --set apex.buffer_size=40000 --set apex.learning_starts=5000 --set eval_episodes=2 --no-progress
  step ray-bench-distributed --needs ray "$PYTHON" scripts/bench_distributed.py --device cuda --batch 512 \
    --steps 40000 --actors 1,4,8,15
  step ray-sweep --needs ray "$PYTHON" scripts/sweep.py --games MsPacman --archs conv,coordconv --seeds 0 \
    --timesteps 4000 --device cuda --ray-address local --gpus-per-run 0.5 --runs "$work/ray-sweep" \
    --set eval_episodes=0

  if (( dry_run )); then
    return 0
  fi
  echo
  echo "outputs in $work"
  summary
}

if (( dry_run )); then
  main
else
  log=${OUT:-/tmp}/cuda_check.log
  main 2>&1 | tee "$log"
  exit "${PIPESTATUS[0]}"
fi
