"""The run directory: where one run keeps what it writes, and what state it is in.

One run of one agent, arch, game and seed lives in ``<runs>/<game>/<agent>-<arch>/seed<k>/``::

    config.json                 every resolved setting, package versions, git commit
    tb/                         TensorBoard events (episode/score per finished game, ...)
    checkpoints/                model_<steps>_steps.zip; the latest resumes the run (agents with
                                a replay keep replay_<steps>_steps.npz beside the latest)
    evaluation.json             the training's final evaluation over full games
    evaluation_<steps>.json     later evaluations of a checkpoint (``evaluate``)
    train.log                   the console output, when the sweep started the run
    videos/                     mp4 videos of games (``evaluate --video``)

Training, the sweep, the report and ``evaluate`` all read a run through this module, so that
"finished" and "the latest checkpoint" mean one thing everywhere. It imports neither torch nor
the agents: the report reads run directories copied from a cluster without them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from rl_coordconv import interrupts

CONFIG_FILE = "config.json"
TENSORBOARD_DIR = "tb"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "model"
REPLAY_PREFIX = "replay"
LOG_FILE = "train.log"
VIDEOS_DIR = "videos"
FINAL_EVALUATION = "evaluation.json"
_CHECKPOINT_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}_(\d+)_steps\.zip$")
_EVALUATION_NAME = re.compile(r"^evaluation(?:_(\d+))?\.json$")


RUN_KEYS = ("game", "agent", "arch", "seed")  # what every config.json says of its run
# Runs written before the setting eval_episodes existed were evaluated over 10 games.
DEFAULT_EVAL_EPISODES = 10


class NotARunDirectory(ValueError):
    """A config.json that is not a run's: no ``config`` section with game, agent, arch and seed."""


@dataclass(frozen=True)
class RunConfig:
    """What a run's config.json says: who the run is, its budget and its final evaluation, with
    the whole ``config`` section (every resolved setting) and the whole record as written."""

    game: str
    agent: str
    arch: str
    seed: int
    timesteps: int | None  # agent steps it is configured for; None in a record that lacks them
    eval_episodes: int  # full games of its final evaluation; 0: none
    precision: str  # "fp32" or "bf16" (records written before the setting existed: fp32)
    settings: dict[str, Any]
    record: dict[str, Any]


def run_directory(runs: Path | str, run: Any) -> Path:
    """``<runs>/<game>/<agent>-<arch>/seed<k>``: the folder of ``run``, anything with ``game``,
    ``agent``, ``arch`` and ``seed`` (an ``ExperimentConfig``, a :class:`RunConfig`)."""
    return Path(runs) / run.game / f"{run.agent}-{run.arch}" / f"seed{run.seed}"


def config_path(run_dir: Path | str) -> Path:
    """``run_dir/config.json``."""
    return Path(run_dir) / CONFIG_FILE


def read_config(run_dir: Path | str) -> RunConfig:
    """The run's config.json, the one reading of it for training, evaluation, the sweep and the report.

    :raises FileNotFoundError: no config.json (not a run directory).
    :raises NotARunDirectory: no ``config`` section with game, agent, arch and seed (another tool's file).
    :raises ValueError: unreadable JSON.
    """
    path = config_path(run_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"{Path(run_dir)} has no {CONFIG_FILE}: not a run directory (<runs>/<game>/<agent>-<arch>/seed<k>)"
        )
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable run config ({type(error).__name__}: {error})") from None
    settings = record.get("config") if isinstance(record, dict) else None
    if not isinstance(settings, dict) or any(key not in settings for key in RUN_KEYS):
        raise NotARunDirectory(f"{CONFIG_FILE} without config.game, .agent, .arch and .seed: not a run directory")
    timesteps = settings.get("timesteps")
    return RunConfig(
        game=str(settings["game"]),
        agent=str(settings["agent"]),
        arch=str(settings["arch"]),
        seed=int(settings["seed"]),
        timesteps=int(timesteps) if isinstance(timesteps, (int, float)) else None,
        eval_episodes=int(settings.get("eval_episodes", DEFAULT_EVAL_EPISODES)),
        precision=str(settings.get("precision", "fp32")),
        settings=settings,
        record=record,
    )


def write_config(run_dir: Path | str, record: dict[str, Any]) -> Path:
    """Write ``record`` (with its ``config`` section of every resolved setting) as the run's config.json."""
    return save_atomically(config_path(run_dir), lambda path: path.write_text(json.dumps(record, indent=2)))


def tensorboard_dir(run_dir: Path | str) -> Path:
    """``run_dir/tb``: the run's TensorBoard events, training's and later evaluations'."""
    return Path(run_dir) / TENSORBOARD_DIR


def videos_dir(run_dir: Path | str) -> Path:
    """``run_dir/videos``: the mp4 videos ``evaluate --video`` writes."""
    return Path(run_dir) / VIDEOS_DIR


def replay_path(run_dir: Path | str, steps: int, suffix: str = ".npz") -> Path:
    """``run_dir/checkpoints/replay_<steps>_steps.npz``: the replay saved with that checkpoint
    (``suffix=""`` gives the prefix of a distributed run's one file per shard)."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{REPLAY_PREFIX}_{steps}_steps{suffix}"


def evaluation_path(run_dir: Path | str, steps: int | None = None) -> Path:
    """``evaluation.json`` (the training's final one, ``steps=None``) or ``evaluation_<steps>.json``
    (a later evaluation of the checkpoint at ``steps``)."""
    return Path(run_dir) / (FINAL_EVALUATION if steps is None else f"evaluation_{steps}.json")


def holds_a_run(run_dir: Path | str) -> bool:
    """Whether ``run_dir`` holds anything but train.log (which the sweep opens before the run
    starts): then it is a run, and a new run may not use the directory."""
    run_dir = Path(run_dir)
    return run_dir.is_dir() and any(path.name != LOG_FILE for path in run_dir.iterdir())


def write_evaluation(run_dir: Path | str, record: dict[str, Any], steps: int | None = None) -> Path:
    """Write an evaluation record (``timesteps``, ``episodes``, ``mean_score``, ...) to
    :func:`evaluation_path`: the final one, or with ``steps`` that of a later evaluation."""
    return save_atomically(evaluation_path(run_dir, steps), lambda path: path.write_text(json.dumps(record, indent=2)))


def check_new_run_dir(run_dir: Path | str) -> None:
    """The rule for a directory a new run may use: not :func:`holds_a_run`. A run is never overwritten.

    :raises FileExistsError: the directory holds a run; with what to do instead.
    """
    if holds_a_run(run_dir):
        raise FileExistsError(
            f"run directory {run_dir} already holds a run; pass --resume to continue it, or choose another --seed or --runs"
        )


class RunState(str, Enum):
    """Where a run directory stands, as the sweep acts on it."""

    NEW = "new"  # no directory, or nothing in it but train.log: start it
    STARTED = "started"  # it wrote files but no complete checkpoint: nothing to resume, start it afresh
    RESUMABLE = "resumable"  # a complete checkpoint, not finished: resume it
    FINISHED = "finished"  # trained to its configured steps, and evaluated unless told not to


def checkpoint_path(run_dir: Path | str, steps: int) -> Path:
    """``run_dir/checkpoints/model_<steps>_steps.zip``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{CHECKPOINT_PREFIX}_{steps}_steps.zip"


def checkpoint_steps(path: Path | str) -> int | None:
    """The agent steps in a checkpoint's name (``model_500000_steps.zip`` -> 500000); None for
    any other name."""
    match = _CHECKPOINT_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoints(run_dir: Path | str) -> list[tuple[int, Path]]:
    """Every ``model_<steps>_steps.zip`` of the run, complete or not, by ascending steps."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [
        (steps, path)
        for path in folder.glob(f"{CHECKPOINT_PREFIX}_*_steps.zip")
        if (steps := checkpoint_steps(path)) is not None
    ]
    return sorted(found)


def latest_checkpoint(run_dir: Path | str) -> Path:
    """The complete checkpoint with the most steps (a file cut short by a kill is skipped, with a
    warning).

    :raises FileNotFoundError: the run has no complete checkpoint.
    """
    for _, path in reversed(checkpoints(run_dir)):
        if zipfile.is_zipfile(path):
            return path
        warnings.warn(f"skipping {path}: not a complete checkpoint (was the run killed while saving it?)", stacklevel=2)
    raise FileNotFoundError(f"nothing to resume: no checkpoint in {Path(run_dir) / CHECKPOINT_DIR}")


def checkpointed_steps(run_dir: Path | str) -> int:
    """The steps of the latest complete checkpoint; 0 without one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return checkpoint_steps(latest_checkpoint(run_dir)) or 0
        except FileNotFoundError:
            return 0


@dataclass(frozen=True)
class Evaluation:
    """One evaluation file of a run: the checkpoint's ``timesteps`` (agent steps), the number of
    full games and their mean raw score, and the whole record as written."""

    path: Path
    timesteps: int
    episodes: int
    mean_score: float
    record: dict


def read_evaluation(path: Path | str) -> Evaluation:
    """One ``evaluation*.json``.

    :raises ValueError: unreadable, or without ``timesteps`` and ``mean_score``.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        return Evaluation(
            path,
            int(record["timesteps"]),
            int(record.get("episodes", len(record.get("scores", [])))),
            float(record["mean_score"]),
            record,
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"unreadable evaluation {path.name} ({type(error).__name__}: {error})") from None


def evaluations(run_dir: Path | str) -> list[Evaluation]:
    """Every readable evaluation of the run, oldest checkpoint first; at the same checkpoint, the
    one over fewer games first. Unreadable files are skipped with a warning."""
    found = []
    for path in sorted(Path(run_dir).glob("evaluation*.json")):
        if not _EVALUATION_NAME.match(path.name):
            continue
        try:
            found.append(read_evaluation(path))
        except ValueError as error:
            warnings.warn(str(error), stacklevel=2)
    return sorted(found, key=lambda evaluation: (evaluation.timesteps, evaluation.episodes, evaluation.path.name))


def final_evaluation(run_dir: Path | str) -> Evaluation | None:
    """The training's own final evaluation (``evaluation.json``), if readable."""
    path = evaluation_path(run_dir)
    try:
        return read_evaluation(path) if path.exists() else None
    except ValueError:
        return None


def run_state(run_dir: Path | str, timesteps: int, eval_episodes: int) -> RunState:
    """The state of the run in ``run_dir`` configured for ``timesteps`` agent steps and a final
    evaluation of ``eval_episodes`` games (0: none).

    Finished: its final evaluation was written at (or past) ``timesteps`` (training writes it
    after the final checkpoint, so run records without checkpoints still count), or, with no
    evaluation asked for, a complete checkpoint at (or past) ``timesteps``.
    """
    run_dir = Path(run_dir)
    evaluation = final_evaluation(run_dir) if eval_episodes > 0 else None
    if evaluation is not None and evaluation.timesteps >= timesteps:
        return RunState.FINISHED
    steps = checkpointed_steps(run_dir)
    if eval_episodes == 0 and steps >= timesteps > 0:
        return RunState.FINISHED
    if steps > 0:
        return RunState.RESUMABLE
    return RunState.STARTED if holds_a_run(run_dir) else RunState.NEW


def state_of(run: RunConfig, run_dir: Path | str) -> RunState:
    """:func:`run_state` of ``run_dir`` for the budget and evaluation its own config.json states."""
    return run_state(run_dir, run.timesteps, run.eval_episodes) if run.timesteps is not None else RunState.STARTED


def save_atomically(path: Path | str, write: Callable[[Path], object]) -> Path:
    """``write(partial)`` to a temporary name beside ``path``, then rename it to ``path``, with
    Ctrl-C held back meanwhile: ``path`` is always either the old file or a complete new one.

    :param write: writes the whole file to the path it is given (e.g. ``model.save``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.partial{path.suffix}")
    with interrupts.interrupts_deferred():
        try:
            write(partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    return path


def record_files(run_dir: Path | str) -> list[Path]:
    """What a run's record holds: config.json, the TensorBoard events, the evaluations and
    train.log; never checkpoints, replays or videos (large, and not needed to report a run)."""
    run_dir = Path(run_dir)
    files = [config_path(run_dir), run_dir / LOG_FILE, *sorted(run_dir.glob("evaluation*.json"))]
    files += sorted(path for path in tensorboard_dir(run_dir).rglob("*") if path.is_file())
    return [path for path in files if path.is_file()]


def copy_record(run_dir: Path | str, destination: Path | str) -> list[Path]:
    """Copy the run's :func:`record_files` to ``destination`` (same names); returns the copies."""
    run_dir, destination = Path(run_dir), Path(destination)
    copies = []
    for path in record_files(run_dir):
        target = destination / path.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copies.append(target)
    return copies


def prune_replays(run_dir: Path | str, keep: list[Path]) -> None:
    """Delete every saved replay of the run (``checkpoints/replay_*``, a single buffer's or a
    shard's) but the files in ``keep``: a full Atari replay is ~7 GB, so only the latest stays."""
    keep = {Path(path).resolve() for path in keep}
    for path in (Path(run_dir) / CHECKPOINT_DIR).glob(f"{REPLAY_PREFIX}_*_steps*.npz"):
        if path.resolve() not in keep:
            path.unlink()
