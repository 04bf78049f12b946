"""Finding run directories and reading their TensorBoard scalars and evaluations.

A run directory (:mod:`rl_coordconv.rundir`) is recognised by its ``config.json`` alone, not by
where it lies, so runs copied from a cluster into any folder structure are found, and so are run
records without checkpoints. Its state (finished or not) is the one the sweep acts on
(:func:`rl_coordconv.rundir.run_state`). A run trained in bfloat16 is read as the arch
``<arch>-bf16``, so a folder holding both precisions compares them as two archs would be.

Scalars are read from TensorBoard's own event files with every point kept (the event
accumulator's default keeps a sample of 10,000 per tag).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from rl_coordconv import rundir
from rl_coordconv.rundir import Evaluation, RunState

RUN_LAYOUT = (
    "a run directory holds config.json with "
    '{"config": {"game": ..., "agent": ..., "arch": ..., "seed": ..., "timesteps": ...}} and tb/ with '
    "TensorBoard event files, as scripts/train.py writes them at <runs>/<game>/<agent>-<arch>/seed<k>/"
)


class NoRunsError(ValueError):
    """The folder holds no usable run directory."""


@dataclass(frozen=True)
class Series:
    """One scalar tag of one run: ``steps`` (n,) int64 agent steps, ascending (several values may
    share a step), and ``values`` (n,) float64."""

    steps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


@dataclass
class Run:
    """One run directory: what its config.json says, what its TensorBoard events hold, its
    evaluations and its state."""

    path: Path
    game: str
    agent: str
    arch: str  # the arch, with "-bf16" appended for a run trained in bfloat16 (compared as an arch of its own)
    seed: int
    timesteps: int | None  # configured agent steps; None when config.json does not say
    scalars: dict[str, Series] = field(default_factory=dict)
    state: RunState = RunState.STARTED
    checkpointed_steps: int = 0  # the latest complete checkpoint's steps (0: none, or a record without them)
    evaluations: list[Evaluation] = field(default_factory=list)  # oldest checkpoint first

    @property
    def name(self) -> str:
        return f"{self.game} {self.agent}-{self.arch} seed{self.seed}"

    @property
    def finished(self) -> bool:
        """Trained to its configured steps and evaluated, as the sweep counts it (``rundir.run_state``)."""
        return self.state == RunState.FINISHED

    @property
    def last_step(self) -> int:
        """The last agent step any scalar was logged at (0 when none was)."""
        return max((int(series.steps[-1]) for series in self.scalars.values() if len(series)), default=0)

    @property
    def trained_steps(self) -> int:
        """How far it trained, as far as its files tell: its latest checkpoint or its last scalar."""
        return max(self.checkpointed_steps, self.last_step)

    @property
    def in_progress(self) -> bool:
        """Not finished and short of its configured steps: still running, or stopped early."""
        return not self.finished and self.timesteps is not None and self.trained_steps < self.timesteps

    @property
    def evaluation(self) -> Evaluation | None:
        """The evaluation of its latest evaluated checkpoint, over the most games when there are several."""
        return self.evaluations[-1] if self.evaluations else None


@dataclass
class FoundRuns:
    """The usable runs under a folder, and one line for each thing that was skipped or is odd."""

    root: Path
    runs: list[Run]
    notes: list[str] = field(default_factory=list)


def read_scalars(tb_dir: Path | str) -> dict[str, Series]:
    """Every point of every scalar tag in the event files of ``tb_dir`` (not its subfolders).

    Uses TensorBoard's ``EventAccumulator`` with ``size_guidance={"scalars": 0}`` (keep all), which
    also drops the points a resumed run's ``purge_step`` discards.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    # A resumed run's purge logs a warning per event file; the purge itself is what we want.
    tb_logger = logging.getLogger("tensorboard")
    level = tb_logger.level
    tb_logger.setLevel(logging.ERROR)
    try:
        accumulator.Reload()
    finally:
        tb_logger.setLevel(level)
    scalars = {}
    for tag in accumulator.Tags()["scalars"]:
        events = accumulator.Scalars(tag)
        steps = np.array([event.step for event in events], dtype=np.int64)
        values = np.array([event.value for event in events], dtype=np.float64)
        order = np.argsort(steps, kind="stable")
        scalars[tag] = Series(steps[order], values[order])
    return scalars


def load_run(run_dir: Path | str) -> Run:
    """Read one run directory.

    :raises ValueError: not a run directory, or no TensorBoard scalars (crashed before logging).
    """
    run_dir = Path(run_dir)
    config = rundir.read_config(run_dir)
    tb_dir = rundir.tensorboard_dir(run_dir)
    if not tb_dir.is_dir() or not any(tb_dir.glob("*tfevents*")):
        raise ValueError("no TensorBoard event files in tb/ (crashed before logging, or not started)")
    try:
        scalars = read_scalars(tb_dir)
    except Exception as error:  # a damaged event file: report it, do not stop the report
        raise ValueError(f"unreadable TensorBoard events ({type(error).__name__}: {error})") from None
    if not any(len(series) for series in scalars.values()):
        raise ValueError("TensorBoard event files without any scalar (crashed before logging)")
    return Run(
        path=run_dir,
        game=config.game,
        agent=config.agent,
        arch=config.arch if config.precision == "fp32" else f"{config.arch}-{config.precision}",
        seed=config.seed,
        timesteps=config.timesteps,
        scalars=scalars,
        state=rundir.state_of(config, run_dir),
        checkpointed_steps=rundir.checkpointed_steps(run_dir),
        evaluations=rundir.evaluations(run_dir),
    )


def find_runs(root: Path | str, *, progress: bool = False) -> FoundRuns:
    """All run directories under ``root`` (found by their config.json, at any depth).

    Messy folders are reported, not fatal: folders that are not runs, crashed runs without events,
    duplicated runs (the one with more steps is kept) and runs in progress each get a line in
    ``notes``.

    :raises NoRunsError: ``root`` is missing or holds no usable run.
    """
    root = Path(root)
    if not root.is_dir():
        raise NoRunsError(f"{root} is not a directory; {RUN_LAYOUT}")
    notes: list[str] = []
    candidates = sorted(path.parent for path in root.rglob(rundir.CONFIG_FILE))
    runs: dict[tuple[str, str, str, int], Run] = {}
    for run_dir in tqdm(candidates, desc="reading runs", unit="run", disable=not progress or len(candidates) < 2):
        where = run_dir.relative_to(root) if run_dir != root else Path(".")
        try:
            run = load_run(run_dir)
        except ValueError as error:
            notes.append(f"skipped {where}: {error}")
            continue
        key = (run.game, run.agent, run.arch, run.seed)
        if key in runs:
            kept, dropped = sorted([runs[key], run], key=lambda r: r.last_step, reverse=True)
            notes.append(
                f"{run.name} appears twice: kept {kept.path.relative_to(root)} ({kept.last_step:,} steps), "
                f"ignored {dropped.path.relative_to(root)} ({dropped.last_step:,} steps)"
            )
            runs[key] = kept
        else:
            runs[key] = run
    found = sorted(runs.values(), key=lambda r: (r.agent, r.game, r.arch, r.seed))
    if not found:
        detail = f" ({len(candidates)} config.json found, none usable: " + "; ".join(notes) + ")" if candidates else ""
        raise NoRunsError(f"no runs under {root}{detail}; {RUN_LAYOUT}")
    for run in found:
        if run.in_progress:
            notes.append(
                f"{run.name}: in progress or stopped early, at {run.trained_steps:,} of {run.timesteps:,} "
                f"steps ({100 * run.trained_steps / run.timesteps:.0f} %)"
            )
        elif not run.finished:
            notes.append(
                f"{run.name}: trained to {run.trained_steps:,} steps, but its final evaluation is missing "
                "(the sweep resumes it to evaluate it)"
            )
        if len(run.evaluations) > 1:
            listed = ", ".join(
                f"{evaluation.path.name} ({evaluation.timesteps:,} steps, {evaluation.episodes} games)"
                for evaluation in run.evaluations
            )
            notes.append(
                f"{run.name}: evaluated {len(run.evaluations)} times ({listed}); the report uses "
                f"{run.evaluation.path.name}, the latest checkpoint's"
            )
    return FoundRuns(root, found, notes)


def up_to(found: FoundRuns, steps: int) -> FoundRuns:
    """``found`` as it stood at ``steps`` agent steps, to compare runs at a smaller budget than
    they trained to: every scalar point after ``steps`` left out, each run's budget ``steps`` (its
    own where that is smaller), and only the evaluations of checkpoints at or before it. A run
    that had not reached ``steps`` counts as incomplete unless it finished its own smaller budget.
    Notes say where the report is cut, what it left out and which runs stop short of the cut.

    :raises ValueError: ``steps`` is not a positive number of agent steps.
    """
    if steps < 1:
        raise ValueError(f"the steps to cut the runs at must be >= 1, got {steps:,}")
    notes = [*found.notes, f"every run is cut at {steps:,} agent steps: the points logged after it are left out"]
    runs = []
    for run in found.runs:
        evaluations = [evaluation for evaluation in run.evaluations if evaluation.timesteps <= steps]
        later = [evaluation for evaluation in run.evaluations if evaluation.timesteps > steps]
        if later:
            notes.append(
                f"{run.name}: left out {', '.join(f'{e.path.name} ({e.timesteps:,} steps)' for e in later)}, after the cut"
            )
        cut = dataclasses.replace(
            run,
            timesteps=steps if run.timesteps is None else min(run.timesteps, steps),
            scalars={
                tag: Series(series.steps[series.steps <= steps], series.values[series.steps <= steps])
                for tag, series in run.scalars.items()
            },
            checkpointed_steps=min(run.checkpointed_steps, steps),
            evaluations=evaluations,
        )
        if cut.trained_steps < steps:
            notes.append(f"{run.name}: at {cut.trained_steps:,} of the {steps:,} steps of the cut")
        runs.append(cut)
    return FoundRuns(found.root, runs, notes)
