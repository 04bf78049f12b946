"""The run-directory contract: checkpoint names, run states, evaluations, atomic saves."""

import json
import os
import signal
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

from rl_coordconv import interrupts, rundir
from rl_coordconv.commands import records
from rl_coordconv.rundir import RunState, run_state

TIMESTEPS = 1000


def checkpoint(run_dir: Path, steps: int, complete: bool = True) -> Path:
    path = run_dir / "checkpoints" / f"model_{steps}_steps.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", "{}")
    if not complete:
        path.write_bytes(path.read_bytes()[:20])
    return path


def evaluation(run_dir: Path, steps: int, name: str = "evaluation.json", episodes: int = 10) -> None:
    (run_dir / name).write_text(json.dumps({"timesteps": steps, "episodes": episodes, "mean_score": 1.0}))


def test_checkpoint_names_and_steps(tmp_path):
    assert rundir.checkpoint_path(tmp_path, 500) == tmp_path / "checkpoints" / "model_500_steps.zip"
    assert rundir.checkpoint_steps("model_500000_steps.zip") == 500_000
    assert rundir.checkpoint_steps("model_500_steps.partial.zip") is None
    assert rundir.checkpoint_steps("replay_500_steps.npz") is None
    for steps in (900, 1000, 200):
        checkpoint(tmp_path, steps)
    assert [steps for steps, _ in rundir.checkpoints(tmp_path)] == [200, 900, 1000]  # by steps, not by name
    checkpoint(tmp_path, 1100, complete=False)
    with pytest.warns(UserWarning, match="model_1100_steps.zip: not a complete checkpoint"):
        assert rundir.latest_checkpoint(tmp_path).name == "model_1000_steps.zip"
    assert rundir.checkpointed_steps(tmp_path) == 1000


def test_run_states(tmp_path):
    run_dir = tmp_path / "run"
    assert run_state(run_dir, TIMESTEPS, eval_episodes=10) == RunState.NEW
    run_dir.mkdir()
    (run_dir / "train.log").write_text("$ train.py ...")
    assert run_state(run_dir, TIMESTEPS, eval_episodes=10) == RunState.NEW  # the sweep's log only
    (run_dir / "config.json").write_text("{}")
    assert run_state(run_dir, TIMESTEPS, eval_episodes=10) == RunState.STARTED
    checkpoint(run_dir, 500, complete=False)
    assert run_state(run_dir, TIMESTEPS, eval_episodes=10) == RunState.STARTED  # nothing to resume from
    checkpoint(run_dir, 500)
    assert run_state(run_dir, TIMESTEPS, eval_episodes=10) == RunState.RESUMABLE
    checkpoint(run_dir, TIMESTEPS)
    assert run_state(run_dir, TIMESTEPS, eval_episodes=10) == RunState.RESUMABLE  # trained, not evaluated
    assert run_state(run_dir, TIMESTEPS, eval_episodes=0) == RunState.FINISHED
    evaluation(run_dir, 500, name="evaluation_500.json")  # evaluate's, of an earlier checkpoint
    assert run_state(run_dir, TIMESTEPS, eval_episodes=10) == RunState.RESUMABLE
    evaluation(run_dir, TIMESTEPS)
    assert run_state(run_dir, TIMESTEPS, eval_episodes=10) == RunState.FINISHED
    assert run_state(run_dir, 2 * TIMESTEPS, eval_episodes=10) == RunState.RESUMABLE  # a longer budget


def test_a_run_record_without_checkpoints_is_finished_by_its_final_evaluation(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    evaluation(tmp_path, TIMESTEPS)
    assert run_state(tmp_path, TIMESTEPS, eval_episodes=10) == RunState.FINISHED
    evaluation(tmp_path, TIMESTEPS // 2)
    assert run_state(tmp_path, TIMESTEPS, eval_episodes=10) == RunState.STARTED


def test_evaluations_oldest_checkpoint_first_and_more_games_last(tmp_path):
    evaluation(tmp_path, 1000, episodes=10)
    evaluation(tmp_path, 1000, name="evaluation_1000.json", episodes=30)
    evaluation(tmp_path, 500, name="evaluation_500.json", episodes=100)
    (tmp_path / "evaluation_700.json").write_text("{not json")
    (tmp_path / "evaluation_notes.json").write_text("{}")  # not an evaluation's name
    with pytest.warns(UserWarning, match="unreadable evaluation evaluation_700.json"):
        found = rundir.evaluations(tmp_path)
    assert [(item.path.name, item.timesteps, item.episodes) for item in found] == [
        ("evaluation_500.json", 500, 100),
        ("evaluation.json", 1000, 10),
        ("evaluation_1000.json", 1000, 30),
    ]


def test_an_atomic_save_that_fails_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "checkpoints" / "model_500_steps.zip"
    rundir.save_atomically(path, lambda target: target.write_bytes(b"old"))

    def failing_write(target: Path) -> None:
        target.write_bytes(b"half of it")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        rundir.save_atomically(path, failing_write)
    assert path.read_bytes() == b"old"
    assert sorted(item.name for item in path.parent.iterdir()) == ["model_500_steps.zip"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_ctrl_c_or_kill_during_an_atomic_save_lands_after_the_write(tmp_path, signum):
    path = tmp_path / "model_500_steps.zip"
    written = []

    def write_with_a_signal(target: Path) -> None:
        with target.open("wb") as file:
            file.write(b"first half, ")
            os.kill(os.getpid(), signum)
            file.write(b"second half")
        written.append(True)

    @interrupts.stops_on_signals
    def main() -> int:
        rundir.save_atomically(path, write_with_a_signal)
        return 0

    with pytest.raises(KeyboardInterrupt):
        main()
    assert written and path.read_bytes() == b"first half, second half"


def test_a_command_started_with_ctrl_c_ignored_still_stops_on_it_and_puts_the_handlers_back():
    """A script's ``nohup ... &`` starts its job with SIGINT ignored; a command must stop on it anyway."""

    @interrupts.stops_on_signals
    def main() -> int:
        os.kill(os.getpid(), signal.SIGINT)
        return 0

    previous_term = signal.getsignal(signal.SIGTERM)
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt):
            main()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is previous_term
    finally:
        signal.signal(signal.SIGINT, previous_int)


@pytest.fixture
def recorded_stop_signals():
    """Handlers for SIGINT and SIGTERM that only record, in order, the signals they get."""
    delivered: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, frame: delivered.append(signum))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    yield delivered
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def test_held_back_signals_are_each_delivered_once_as_themselves_to_the_handlers_from_before(recorded_stop_signals):
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with interrupts.interrupts_deferred():
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
            os.kill(os.getpid(), signum)
        assert recorded_stop_signals == []
    assert recorded_stop_signals == [signal.SIGTERM, signal.SIGINT]
    assert all(signal.getsignal(signum) is handler for signum, handler in handlers.items())


def test_a_signal_held_back_by_nested_blocks_waits_for_the_outermost(recorded_stop_signals):
    with interrupts.interrupts_deferred():
        with interrupts.interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
        assert recorded_stop_signals == []
    assert recorded_stop_signals == [signal.SIGTERM]


def test_an_ignored_ctrl_c_stays_ignored_and_does_not_hide_a_kill(recorded_stop_signals):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts.interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    assert recorded_stop_signals == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def run_settings(seed: int, **settings) -> dict:
    """The ``config`` section of a run's config.json: who the run is and its budget."""
    return {"game": "MsPacman", "agent": "a2c", "arch": "conv", "seed": seed, "timesteps": TIMESTEPS, **settings}


def test_copy_records_takes_finished_runs_without_their_checkpoints(tmp_path):
    source = tmp_path / "sweep"
    for seed, finished in ((0, True), (1, False)):
        run_dir = source / "MsPacman" / "a2c-conv" / f"seed{seed}"
        (run_dir / "tb").mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps({"config": run_settings(seed, eval_episodes=10)}))
        (run_dir / "tb" / "events.out.tfevents.1.host").write_bytes(b"events")
        (run_dir / "train.log").write_text("$ train.py")
        checkpoint(run_dir, TIMESTEPS if finished else 500)
        (run_dir / "checkpoints" / "replay_1000_steps.npz").write_bytes(b"replay")
        (run_dir / "videos").mkdir()
        (run_dir / "videos" / "game1.mp4").write_bytes(b"video")
        if finished:
            evaluation(run_dir, TIMESTEPS)
            evaluation(run_dir, TIMESTEPS, name="evaluation_1000.json", episodes=30)
    destination = tmp_path / "results"
    script = Path(__file__).resolve().parents[1] / "scripts" / "records.py"
    done = subprocess.run([sys.executable, str(script), str(source), str(destination)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "copied 1 finished runs" in done.stdout and "1 not finished, left out" in done.stdout
    copied = sorted(str(path.relative_to(destination)) for path in destination.rglob("*") if path.is_file())
    assert copied == [
        f"MsPacman/a2c-conv/seed0/{name}"
        for name in ("config.json", "evaluation.json", "evaluation_1000.json", "tb/events.out.tfevents.1.host", "train.log")
    ]
    assert run_state(destination / "MsPacman" / "a2c-conv" / "seed0", TIMESTEPS, eval_episodes=10) == RunState.FINISHED


@pytest.mark.parametrize(
    "destination, message",
    [
        ("sweep", r"sweep is .*sweep or inside it; give a folder outside it"),
        ("sweep/MsPacman", r"sweep/MsPacman is .*sweep or inside it"),
        ("sweep/x", r"sweep/x is .*sweep or inside it"),
        ("notes.txt", r"notes.txt is not a directory"),
        ("results", r"sweep/MsPacman/a2c-conv/seed1/config.json is not a readable run config \(JSONDecodeError"),
    ],
)
def test_records_refuses_what_it_cannot_copy_in_one_line(tmp_path, capsys, monkeypatch, destination, message):
    for seed, text in ((0, json.dumps({"config": run_settings(0)})), (1, "{'config': ")):
        run_dir = tmp_path / "sweep" / "MsPacman" / "a2c-conv" / f"seed{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text(text if destination == "results" else "{}")
    (tmp_path / "notes.txt").write_text("not a folder")
    monkeypatch.chdir(tmp_path)  # the destination relative, the source absolute: compared as the same folders
    assert records.main([str(tmp_path / "sweep"), destination]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and __import__("re").search(message, err), err
    assert sorted(path.name for path in (tmp_path / "sweep" / "MsPacman").iterdir()) == ["a2c-conv"]


def test_pruning_keeps_the_latest_replays_given_relative_or_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = Path("runs") / "MsPacman" / "apex-conv" / "seed0"  # relative, as --runs runs gives it
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True)
    names = [
        "replay_100_steps.npz",
        "replay_200_steps.npz",
        "replay_100_steps.shard0.actor0.npz",
        "replay_200_steps.shard0.actor0.npz",
        "model_200_steps.zip",
    ]
    for name in names:
        (folder / name).write_bytes(b"x")
    rundir.prune_replays(
        run_dir, keep=[folder / "replay_200_steps.npz", (folder / "replay_200_steps.shard0.actor0.npz").resolve()]
    )
    assert sorted(path.name for path in folder.iterdir()) == [
        "model_200_steps.zip",
        "replay_200_steps.npz",
        "replay_200_steps.shard0.actor0.npz",
    ]


@pytest.mark.parametrize("evaluated", [False, True])
def test_records_and_the_report_agree_on_a_config_without_eval_episodes(tmp_path, evaluated):
    """Runs written before eval_episodes existed were evaluated over 10 games: trained to their
    steps but without evaluation.json they are unfinished for the records command and the report
    alike (both read config.json through rundir.read_config)."""
    from torch.utils.tensorboard import SummaryWriter

    from rl_coordconv.analysis.runs import load_run

    run_dir = tmp_path / "sweep" / "MsPacman" / "a2c-conv" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"config": run_settings(0)}))  # no eval_episodes
    with SummaryWriter(str(run_dir / "tb")) as writer:
        writer.add_scalar("episode/score", 1.0, TIMESTEPS)
    checkpoint(run_dir, TIMESTEPS)
    if evaluated:
        evaluation(run_dir, TIMESTEPS)
    assert rundir.read_config(run_dir).eval_episodes == rundir.DEFAULT_EVAL_EPISODES == 10
    (tmp_path / "sweep" / "notes").mkdir()
    (tmp_path / "sweep" / "notes" / "config.json").write_text('{"lr": 0.1}')  # another tool's: passed over
    copied, left_out = records.copy_finished_records(tmp_path / "sweep", tmp_path / "results")
    assert (len(copied), len(left_out)) == ((1, 0) if evaluated else (0, 1))
    assert load_run(run_dir).finished is evaluated


def test_the_run_directory_names_its_files_in_one_place(tmp_path):
    run_dir = tmp_path / "MsPacman" / "apex-conv" / "seed0"
    assert rundir.config_path(run_dir) == run_dir / "config.json"
    assert rundir.tensorboard_dir(run_dir) == run_dir / "tb"
    assert rundir.replay_path(run_dir, 500) == run_dir / "checkpoints" / "replay_500_steps.npz"
    assert rundir.replay_path(run_dir, 500, suffix="") == run_dir / "checkpoints" / "replay_500_steps"
    assert rundir.evaluation_path(run_dir) == run_dir / "evaluation.json"
    assert rundir.evaluation_path(run_dir, 500) == run_dir / "evaluation_500.json"
    rundir.check_new_run_dir(run_dir)  # absent
    run_dir.mkdir(parents=True)
    (run_dir / "train.log").write_text("$ train")
    rundir.check_new_run_dir(run_dir)  # the sweep's log alone
    rundir.write_config(run_dir, {"config": run_settings(0, eval_episodes=0)})
    with pytest.raises(FileExistsError, match="already holds a run; pass --resume"):
        rundir.check_new_run_dir(run_dir)
    config = rundir.read_config(run_dir)
    assert (config.game, config.agent, config.arch, config.seed, config.timesteps, config.eval_episodes) == (
        "MsPacman",
        "a2c",
        "conv",
        0,
        TIMESTEPS,
        0,
    )
    (run_dir / "config.json").write_text('{"config": {"game": "MsPacman"}}')
    with pytest.raises(ValueError, match="config.json without config.game, .agent, .arch and .seed"):
        rundir.read_config(run_dir)
    (run_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json: not a run directory"):
        rundir.read_config(run_dir)


def test_the_run_directory_layout_and_an_old_records_precision(tmp_path):
    run = types.SimpleNamespace(game="Pong", agent="dqn", arch="coordconv", seed=3)
    assert rundir.run_directory(tmp_path, run) == tmp_path / "Pong" / "dqn-coordconv" / "seed3"
    (tmp_path / "config.json").write_text(json.dumps({"config": {"game": "Pong", "agent": "a2c", "arch": "conv", "seed": 0}}))
    assert rundir.read_config(tmp_path).precision == "fp32"  # written before the setting existed


def test_an_evaluation_counts_only_when_one_was_asked_for(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "evaluation.json").write_text(json.dumps({"timesteps": 1000, "episodes": 2, "mean_score": 1.0}))
    assert run_state(tmp_path, 1000, eval_episodes=0) == RunState.STARTED  # no checkpoint, no evaluation asked
    assert run_state(tmp_path, 1000, eval_episodes=2) == RunState.FINISHED
