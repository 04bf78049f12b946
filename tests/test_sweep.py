import shutil
import sys
from pathlib import Path

import pytest

from agents.experiment import latest_checkpoint
from envs import GAMES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import sweep  # noqa: E402

TINY = ["--set", "a2c.n_envs=2", "--set", "eval_episodes=0", "--set", "checkpoint_every=100", "--max-parallel", "2"]


def test_dry_run_prints_one_train_command_per_run(tmp_path, capsys):
    code = sweep.main(["--games", "MsPacman,Breakout", "--archs", "conv,coordconv", "--seeds", "0-1",
                       "--timesteps", "300k", "--runs", str(tmp_path), "--dry-run", "--set", "a2c.n_envs=8"])
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "train.py" in line]
    expected = {(game, arch, seed) for game in ("MsPacman", "Breakout") for arch in ("conv", "coordconv") for seed in (0, 1)}
    assert {(line.split("--game ")[1].split()[0], line.split("--arch ")[1].split()[0], int(line.split("--seed ")[1].split()[0]))
            for line in lines} == expected
    assert all("--timesteps 300000" in line and "--set=a2c.n_envs=8" in line for line in lines)
    assert not any(tmp_path.iterdir())  # a dry run creates nothing


def test_paper9_is_the_whole_suite():
    args = sweep.parse_args(["--games", "paper9", "--timesteps", "1k", "--seeds", "0"])
    assert [run.config.game for run in sweep.plan(args)] == [game for game in GAMES for _ in ("conv", "coordconv")]


@pytest.mark.parametrize("argv, message", [
    (["--games", "Pacman"], "unknown game 'Pacman'; choose from: MsPacman, .*paper9"),
    (["--agents", "ppo"], "unknown agent 'ppo'; choose from: a2c, dqn, apex"),
    (["--archs", "conv,coord"], "unknown arch 'coord'"),
    (["--seeds", "3-1"], "bad seed range '3-1'"),
    (["--seeds", "a"], "bad seed range 'a'"),
    (["--set", "apex.batch_size=64"], "no selected agent has it \\(the sweep runs a2c\\)"),
    (["--set", "a2c.n_env=8"], "unknown setting 'a2c.n_env'"),
    (["--set", "a2c.n_envs=0"], "a2c.n_envs must be >= 1, got 0"),
])
def test_bad_grids_are_refused_before_anything_starts(argv, message, tmp_path, capsys):
    defaults = {"--games": "MsPacman", "--timesteps": "1000"}
    given = dict(zip(argv[::2], argv[1::2]))
    command = [item for key, value in {**defaults, **given}.items() for item in (key, value) if key != "--set"]
    command += ["--set", given["--set"]] if "--set" in given else []
    assert sweep.main([*command, "--runs", str(tmp_path / "runs")]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_sweep_runs_skips_resumes_and_survives_a_failing_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    grid = ["--games", "MsPacman", "--archs", "conv,coordconv", "--runs", str(runs), *TINY]

    assert sweep.main([*grid, "--seeds", "0", "--timesteps", "200"]) == 0
    conv, coordconv = (runs / "MsPacman" / f"a2c-{arch}" / "seed0" for arch in ("conv", "coordconv"))
    for run_dir in (conv, coordconv):
        assert latest_checkpoint(run_dir).name == "model_200_steps.zip"
        assert "train.py" in (run_dir / "train.log").read_text()

    # A run directory that cannot be resumed (it holds another run) fails; the others go on.
    other = runs / "MsPacman" / "a2c-coordconv" / "seed1"
    shutil.copytree(conv, other)
    (other / "checkpoints" / "model_200_steps.zip").unlink()  # interrupted at step 100
    capsys.readouterr()
    assert sweep.main([*grid, "--seeds", "0-1", "--timesteps", "200"]) == 1
    out = capsys.readouterr().out
    assert "4 runs: 1 new, 1 to resume, 0 to restart (no checkpoint), 2 finished" in out
    assert "FAILED (exit 2)" in out and "differ from the saved run" in out
    assert latest_checkpoint(runs / "MsPacman" / "a2c-conv" / "seed1").name == "model_200_steps.zip"

    # A longer budget resumes the finished runs from their checkpoints.
    assert sweep.main([*grid, "--seeds", "0", "--timesteps", "400"]) == 0
    assert latest_checkpoint(conv).name == latest_checkpoint(coordconv).name == "model_400_steps.zip"
    assert (conv / "train.log").read_text().count("--resume") == 1
