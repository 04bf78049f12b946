"""scripts/check_cuda.sh on CPU: its --dry-run lists every step with its command, and its steps
run one by one, a failing one stopping nothing (PYTHON set to a stand-in that records its calls)."""

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_cuda.sh"
TORCHVISION_VERSION = re.search(r"^TORCHVISION_VERSION := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)[1]

# Every step in order, with its command ({python}: $PYTHON; {work}: the script's scratch folder).
STEPS = {
    "cuda": '{python} -c \'import torch; assert torch.cuda.is_available(), "torch sees no CUDA GPU"; '
    "print(torch.__version__, torch.cuda.get_device_name())'",
    "gpu-tests": "env NVIDIA_TF32_OVERRIDE=0 {python} -m pytest -q -m gpu tests",
    "apex-bench": "{python} scripts/bench_train.py --agent apex --device cuda --rounds 3 --steps 4096",
    "apex-train": "{python} scripts/train.py --game MsPacman --agent apex --arch coordconv --timesteps 12000 "
    "--device cuda --runs {work}/runs --set apex.buffer_size=20000 --set apex.learning_starts=5000 "
    "--set eval_episodes=2 --no-progress",
    "a2c-train": "{python} scripts/train.py --game MsPacman --arch coordconv --timesteps 4000 --device cuda "
    "--runs {work}/runs --set eval_episodes=2 --no-progress",
    "run-directories": "ls -R {work}/runs",
    "bench-layers": "{python} scripts/bench_layers.py --device cuda --rounds 11",
    "bench-layers-bf16": "{python} scripts/bench_layers.py --device cuda --rounds 11 --precision bf16",
    "bench-layers-memory-format": "{python} scripts/bench_layers.py --device cuda --rounds 11 --memory-format --precision bf16",
    "bench-train": "{python} scripts/bench_train.py --device cuda --rounds 3 --steps 2000 --precision fp32,bf16",
    "apex-learner-bench": "{python} scripts/bench_train.py --agent apex-learner --device cuda --rounds 5 "
    "--precision fp32,bf16",
    "bench-sweep": "{python} scripts/bench_sweep.py --device cuda --runs 1,4,8",
    "packed-sweep-dry-run": "{python} scripts/sweep.py --games MsPacman --archs conv,coordconv --seeds 0-1 "
    "--timesteps 4000 --device cuda --runs-per-gpu 4 --runs {work}/packed-sweep "
    "--set eval_episodes=0 --dry-run",
    "packed-sweep": "{python} scripts/sweep.py --games MsPacman --archs conv,coordconv --seeds 0-1 --timesteps 4000 "
    "--device cuda --runs-per-gpu 4 --runs {work}/packed-sweep --set eval_episodes=0",
    "supervised": "{python} scripts/supervised.py --split quadrant --model coordconv --device cuda --out {work}/supervised",
    "detection-packages": f"{{python}} -m pip install --quiet --isolated torchvision=={TORCHVISION_VERSION} "
    "torchmetrics pycocotools",
    "detection": "{python} scripts/supervised.py --experiment detection --seeds 1 --epochs 2 --device cuda "
    "--out {work}/detection",
    "ray-apex-train": "{python} scripts/train.py --game MsPacman --agent apex --arch coordconv --timesteps 12000 "
    "--device cuda --distributed --actors 8 --runs {work}/ray-runs --set apex.n_envs=16 "
    "--set apex.buffer_size=40000 --set apex.learning_starts=5000 --set eval_episodes=2 --no-progress",
    "ray-bench-distributed": "{python} scripts/bench_distributed.py --device cuda --batch 512 --steps 40000 --actors 1,4,8,15",
    "ray-sweep": "{python} scripts/sweep.py --games MsPacman --archs conv,coordconv --seeds 0 --timesteps 4000 "
    "--device cuda --ray-address local --gpus-per-run 0.5 --runs {work}/ray-sweep --set eval_episodes=0",
}
DETECTION_MODULES = "torchvision.models.detection torchmetrics pycocotools"
PYTHON_IS_SET = f"PYTHON is set: install torchvision=={TORCHVISION_VERSION} torchmetrics pycocotools beside it"

# A stand-in for python: it records each call, fails bench_layers.py in fp32 (exit 3), and cannot import ray.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_PYTHON_CALLS"
case "$*" in
  *scripts/bench_layers.py*--precision*) ;;
  *scripts/bench_layers.py*) echo "bench_layers failed on purpose" >&2; exit 3 ;;
  "-c import ray") exit 1 ;;
esac
"""


@pytest.fixture
def fake_python(tmp_path):
    """``(path of the stand-in python, file of its calls)``."""
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return python, tmp_path / "calls.txt"


def run_script(*args: str, python: Path | None, calls: Path | None, out: Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHON", "OUT")}
    environment.update(OUT=str(out), TMPDIR=str(out))
    if python is not None:
        environment.update(PYTHON=str(python), FAKE_PYTHON_CALLS=str(calls))
    # A session of its own: a script that outlives the timeout is killed with everything it started.
    process = subprocess.Popen(
        ["bash", str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def listed_steps(stdout: str) -> dict[str, str]:
    """Step name -> the rest of its line, from the --dry-run listing."""
    return dict(line.split(maxsplit=1) for line in stdout.splitlines())


def test_a_dry_run_lists_every_step_with_its_command_and_runs_nothing(fake_python, tmp_path):
    python, calls = fake_python
    result = run_script("--dry-run", python=python, calls=calls, out=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = listed_steps(result.stdout)
    assert list(listed) == list(STEPS)  # every step, in order; no make venv with PYTHON set
    work = re.search(r"--runs (\S+)/runs ", listed["apex-train"])[1]
    for name, command in STEPS.items():
        expected = command.format(python=python, work=work)
        expected += {
            "detection-packages": f"  [skipped: {PYTHON_IS_SET}]",
            "detection": f"  [needs: {DETECTION_MODULES}]",
            **{ray: "  [needs: ray]" for ray in ("ray-apex-train", "ray-bench-distributed", "ray-sweep")},
        }.get(name, "")
        assert listed[name] == expected
    assert not calls.exists()  # nothing ran, not even an import check
    assert not Path(work).exists() and not (tmp_path / "cuda_check.log").exists()
    assert result.stderr == ""


def test_a_dry_run_without_python_lists_make_venv_first(tmp_path):
    result = run_script("--dry-run", python=None, calls=None, out=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = listed_steps(result.stdout)
    assert list(listed) == ["setup", *STEPS]
    assert listed["setup"] == "make venv"
    assert listed["bench-sweep"] == STEPS["bench-sweep"].format(python=".venv/bin/python")


def test_an_unknown_argument_is_refused(tmp_path):
    result = run_script("--dryrun", python=None, calls=None, out=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "error: unknown argument '--dryrun'; use --dry-run or nothing\n",
    )


def test_a_failing_step_stops_none_after_it_and_the_summary_says_fail(fake_python, tmp_path):
    python, calls = fake_python
    result = run_script(python=python, calls=calls, out=tmp_path)
    assert result.returncode == 1
    # Every python step ran, in order, after its import checks; bench_layers.py failed and the rest went on.
    python_steps = [
        name
        for name, command in STEPS.items()
        if command.startswith("{python}") or command.startswith("env NVIDIA_TF32_OVERRIDE=0 {python}")
    ]
    work = re.search(r"=== apex-train: .* --runs (\S+)/runs ", result.stdout)[1]
    expected_calls = []
    for name in python_steps:
        if name == "detection-packages":
            continue  # skipped: PYTHON is set
        if name == "detection":
            expected_calls += [f"-c import {module}" for module in DETECTION_MODULES.split()]
        if name.startswith("ray-"):
            expected_calls.append("-c import ray")
            continue  # skipped: ray does not import
        command = STEPS[name].format(python=python, work=work).split(f"{python} ", 1)[1]
        expected_calls.append(command.replace("'", ""))
    assert calls.read_text().splitlines() == expected_calls
    assert "bench_layers failed on purpose" in result.stdout  # the step's output is kept
    table = result.stdout.split("=== summary\n")[1].splitlines()
    assert table[0].split() == ["step", "result", "note"]
    rows = {line.split()[0]: line.split(maxsplit=2)[1:] for line in table[1:-1]}
    assert list(rows) == list(STEPS)
    assert [result for result, _ in rows.values()].count("pass") == len(STEPS) - 5
    assert rows["bench-layers"][0] == "fail" and re.fullmatch(r"exit 3 after \d+ s", rows["bench-layers"][1])
    assert rows["detection-packages"] == ["skip", PYTHON_IS_SET]
    for name in ("ray-apex-train", "ray-bench-distributed", "ray-sweep"):
        assert rows[name] == ["skip", f"{python} cannot import ray"]
    assert all(re.fullmatch(r"\d+ s", note) for result, note in rows.values() if result == "pass")
    assert table[-1] == f"{len(STEPS) - 5} passed, 1 failed, 4 skipped"
    assert (tmp_path / "cuda_check.log").read_text() == result.stdout + result.stderr


def test_with_every_step_passing_the_script_exits_0(fake_python, tmp_path):
    python, calls = fake_python
    python.write_text(FAKE_PYTHON.replace("*scripts/bench_layers.py*", "*no-such-script*"))
    result = run_script(python=python, calls=calls, out=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    assert result.stdout.splitlines()[-1] == f"{len(STEPS) - 4} passed, 0 failed, 4 skipped"
