"""Saving and loading a run's checkpoints: the model (SB3's zip) and, for agents with a replay,
the latest replay beside it, each saved atomically (:func:`rl_coordconv.rundir.save_atomically`).

Loading takes checkpoints of earlier versions too. SB3 pickles the classes a model was built with (its policy class, its replay buffer class, the
Ape-X agent's acting state) by their module paths. Versions before 0.2 installed ``agents`` and
``envs`` as top-level packages, so their checkpoints name ``agents.apex.DuelingCnnPolicy`` and
``agents.replay.PrioritizedReplayBuffer``; those modules are now ``rl_coordconv.agents.*``. While
a checkpoint loads, :func:`legacy_module_names` lets ``agents.X`` and ``envs.X`` resolve to the
modules of today's names (the same module objects, so the classes are the same classes); after
the load the old names are gone again, so they never shadow a user's own ``agents`` or ``envs``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from rl_coordconv import interrupts, rundir

LEGACY_PACKAGES = {"agents": "rl_coordconv.agents", "envs": "rl_coordconv.envs"}
Algorithm = TypeVar("Algorithm", bound=BaseAlgorithm)


class _LegacyNameFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``agents.X`` to the module ``rl_coordconv.agents.X`` (and ``envs.X`` alike)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, rest = fullname.partition(".")
        if package not in LEGACY_PACKAGES:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=not rest or None)

    def create_module(self, spec):
        package, _, rest = spec.name.partition(".")
        return importlib.import_module(LEGACY_PACKAGES[package] + (f".{rest}" if rest else ""))

    def exec_module(self, module) -> None:
        pass  # already imported under its own name


@contextmanager
def legacy_module_names() -> Iterator[None]:
    """Within the block, ``import agents.apex`` gives ``rl_coordconv.agents.apex`` (see the module
    docstring); afterwards ``sys.modules`` holds no ``agents`` or ``envs`` entry it did not hold."""
    before = {name for name in sys.modules if name.partition(".")[0] in LEGACY_PACKAGES}
    finder = _LegacyNameFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [name for name in sys.modules if name.partition(".")[0] in LEGACY_PACKAGES]:
            if name not in before:
                del sys.modules[name]


def load_checkpoint(algorithm: type[Algorithm], path: Path | str, **kwargs) -> Algorithm:
    """``algorithm.load(path, **kwargs)``, for checkpoints of this version and of earlier ones."""
    with legacy_module_names():
        return algorithm.load(path, **kwargs)


def save_checkpoint(model: BaseAlgorithm, run_dir: Path, with_replay: bool = False) -> Path:
    """Save ``checkpoints/model_<steps>_steps.zip`` and, ``with_replay``, the replay beside it;
    each written under a temporary name and renamed, with Ctrl-C held back until both are complete
    (saving the replay prunes the previous one, so a model must never be left without its replay)."""
    with interrupts.interrupts_deferred():
        if with_replay:
            save_replay(model, run_dir)
        return rundir.save_atomically(rundir.checkpoint_path(run_dir, model.num_timesteps), model.save)


def save_replay(model: BaseAlgorithm, run_dir: Path) -> Path:
    """``checkpoints/replay_<steps>_steps.npz``, the latest only (a full Atari replay is ~7 GB),
    saved atomically (:func:`rl_coordconv.rundir.save_atomically`)."""
    path = rundir.save_atomically(rundir.replay_path(run_dir, model.num_timesteps), model.save_replay_buffer)
    rundir.prune_replays(run_dir, keep=[path])
    return path


def restore_replay(model: BaseAlgorithm, run_dir: Path) -> None:
    """Load the replay saved with the checkpoint the model came from, or say that there is none."""
    if not hasattr(model, "replay_buffer"):
        return
    path = rundir.replay_path(run_dir, model.num_timesteps)
    if path.exists():
        model.load_replay_buffer(path)
        print(f"Restored the replay ({model.replay_buffer.size():,} transitions) from {path}")
    else:
        warnings.warn(
            f"no replay saved at step {model.num_timesteps:,} in {path.parent}: the run resumes with an "
            "empty replay buffer and refills it before learning",
            stacklevel=2,
        )


class RunCheckpointCallback(BaseCallback):
    """A :func:`save_checkpoint` into ``run_dir/checkpoints`` (the replay too when ``with_replay``)
    each time the agent steps pass a multiple of ``every`` (agent steps), counted from 0, not from
    where a resumed run started: a run interrupted and resumed anywhere still leaves
    ``model_<k x every>_steps.zip`` (with ``every`` a multiple of the env count). Each file is
    saved atomically, so that a Ctrl-C during the save cannot leave half of it."""

    def __init__(self, every: int, run_dir: Path, with_replay: bool) -> None:
        super().__init__()
        self.every = every
        self.run_dir = run_dir
        self.with_replay = with_replay

    def _on_training_start(self) -> None:
        self.next_save = (self.model.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self.next_save:
            save_checkpoint(self.model, self.run_dir, self.with_replay)
            self.next_save = (self.model.num_timesteps // self.every + 1) * self.every
        return True
