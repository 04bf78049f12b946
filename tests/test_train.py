import json
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import experiment
from agents.config import apply_overrides, parse_steps
from agents.experiment import ExperimentConfig, latest_checkpoint, run_experiment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import train  # noqa: E402

SMALL = ["--set", "a2c.n_envs=2", "--set", "checkpoint_every=1000", "--set", "eval_episodes=1", "--no-progress"]


def scalars(run_dir: Path) -> dict[str, list]:
    accumulator = EventAccumulator(str(run_dir / "tb"))
    accumulator.Reload()
    return {tag: accumulator.Scalars(tag) for tag in accumulator.Tags()["scalars"]}


def small_config(**changes) -> ExperimentConfig:
    settings = {"timesteps": 1000, "checkpoint_every": 500, "eval_episodes": 0, "device": "cpu", **changes}
    config = ExperimentConfig(**settings)
    config.a2c.n_envs = 2
    return config


def test_ms_pacman_smoke_run_writes_the_expected_files_and_scalars(tmp_path):
    code = train.main(["--arch", "coordconv", "--timesteps", "3000", "--runs", str(tmp_path), *SMALL])
    assert code == 0
    run_dir = tmp_path / "MsPacman" / "a2c-coordconv" / "seed0"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["arch"] == "coordconv" and saved["config"]["timesteps"] == 3000
    assert saved["config"]["a2c"]["n_envs"] == 2 and saved["config"]["a2c"]["learning_rate"] == 7e-4
    assert saved["resolved_device"] == "cpu"
    assert {"torch", "stable-baselines3", "ale-py", "gymnasium"} <= set(saved["versions"])
    assert "git_commit" in saved
    assert latest_checkpoint(run_dir).name == "model_3000_steps.zip"
    assert (run_dir / "checkpoints" / "model_1000_steps.zip").exists()
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["episodes"] == 1 and evaluation["scores"][0] >= 0
    tags = scalars(run_dir)
    for tag in ("train/value_loss", "train/policy_loss", "train/entropy_loss", "rollout/ep_rew_mean",
                "episode/score", "episode/human_normalized", "eval/mean_score"):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    scores = tags["episode/score"]
    assert all(event.value >= 0 and event.value % 10 == 0 for event in scores)  # raw Ms. Pac-Man points
    assert [e.step for e in scores] == sorted(e.step for e in scores) and scores[-1].step <= 3000


def test_existing_run_is_refused_and_resume_continues_the_step_counter(tmp_path):
    config = small_config()
    run_dir = run_experiment(config, tmp_path, progress_bar=False)
    with pytest.raises(FileExistsError, match="--resume"):
        run_experiment(small_config(), tmp_path, progress_bar=False)
    longer = small_config(timesteps=2000)
    run_experiment(longer, tmp_path, resume=True, progress_bar=False)
    assert latest_checkpoint(run_dir).name == "model_2000_steps.zip"
    steps = [event.step for event in scalars(run_dir)["train/value_loss"]]
    assert steps == [1000, 2000]  # one curve across both sessions (SB3 logs every 100 updates)
    assert json.loads((run_dir / "config.json").read_text())["config"]["timesteps"] == 2000


def test_resume_with_different_settings_is_refused(tmp_path):
    run_experiment(small_config(), tmp_path, progress_bar=False)
    changed = small_config(timesteps=2000)
    changed.a2c.learning_rate = 1e-3
    with pytest.raises(ValueError, match="differ from the saved run.*a2c"):
        run_experiment(changed, tmp_path, resume=True, progress_bar=False)


def test_resume_without_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_experiment(small_config(), tmp_path, resume=True, progress_bar=False)


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, monkeypatch):
    def interrupt_at_600_steps(self):
        if self.num_timesteps >= 600:
            raise KeyboardInterrupt
        return True

    monkeypatch.setattr(experiment.EpisodeScoreCallback, "_on_step", interrupt_at_600_steps)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(small_config(), tmp_path, progress_bar=False)
    run_dir = experiment.run_directory(tmp_path, small_config())
    assert latest_checkpoint(run_dir).name == "model_600_steps.zip"
    monkeypatch.undo()
    run_experiment(small_config(), tmp_path, resume=True, progress_bar=False)
    assert latest_checkpoint(run_dir).name == "model_1000_steps.zip"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--game", "Pacman"], "invalid choice: 'Pacman'"),
        (["--arch", "coord"], "invalid choice: 'coord'"),
        (["--timesteps", "lots"], "cannot read a step count from 'lots'"),
        (["--set", "a2c.n_env=8"], "unknown setting 'a2c.n_env'; settings are: .*a2c.n_envs"),
        (["--set", "a2c.learning_rate=fast"], "a2c.learning_rate='fast' is not a valid float"),
        (["--device", "tpu"], "tpu"),
    ],
)
def test_bad_command_lines_get_clear_errors(argv, message, capsys, tmp_path):
    try:
        code = train.main([*argv, "--runs", str(tmp_path)])
    except SystemExit as exit_:  # argparse choices
        code = exit_.code
    assert code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_step_counts_and_overrides():
    assert [parse_steps(s) for s in ("10M", "250k", "1e6", "5000", "2.5M")] == [10_000_000, 250_000, 1_000_000, 5000, 2_500_000]
    config = ExperimentConfig()
    apply_overrides(config, ["a2c.n_envs=8", "checkpoint_every=100k", "a2c.ent_coef=0.02", "backend=sb3"])
    assert (config.a2c.n_envs, config.checkpoint_every, config.a2c.ent_coef, config.backend) == (8, 100_000, 0.02, "sb3")
