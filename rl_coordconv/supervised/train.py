"""Training and evaluation of one Not-so-Clevr model on one task and split."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from rl_coordconv.supervised import metrics
from rl_coordconv.supervised.data import CANVAS, NotSoClevr, normalized_coordinates
from rl_coordconv.supervised.models import MODELS, build_model, count_parameters


@dataclass(frozen=True)
class Task:
    """How one task turns centres into inputs and targets, and scores predictions."""

    name: str
    metric: str  # name of the headline metric; higher is better
    threshold: float  # the headline metric that counts as solved
    inputs: Callable[[torch.Tensor], torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, points) -> scalar
    scores: Callable[[torch.Tensor, torch.Tensor], dict[str, float]]  # (outputs, points) -> metrics


def _pixel_index(points: torch.Tensor) -> torch.Tensor:
    return points[:, 0] * CANVAS + points[:, 1]


TASKS: dict[str, Task] = {
    "classification": Task(
        "classification", "accuracy", 1.0,
        inputs=normalized_coordinates,
        loss=lambda outputs, points: F.cross_entropy(outputs, _pixel_index(points)),
        scores=lambda outputs, points: {"accuracy": metrics.accuracy(outputs, _pixel_index(points))},
    ),
}


@dataclass
class TrainConfig:
    """One training run. ``None`` hyperparameters take the per-model defaults below."""

    task: str = "classification"
    split: str = "uniform"
    model: str = "coordconv"
    epochs: int | None = None
    learning_rate: float | None = None
    weight_decay: float = 0.0
    batch_size: int = 16
    seed: int = 0
    device: str = "cpu"
    stop_when_solved: bool = True  # stop once the test metric reaches the task's threshold


# Official settings: CoordConv Adam lr 0.005 for 100 epochs; deconv lr 0.01 for up to 2000 epochs.
# Scaled to a 2-core CPU with a cosine decay over the budget: CoordConv 4 epochs (it needs 1-2),
# the deconv baseline 15x as many epochs, about 7x the wall-clock time.
DEFAULT_EPOCHS = {"coordconv": 4, "baseline": 60}
DEFAULT_LEARNING_RATE = {"coordconv": 0.005, "baseline": 0.01}


@dataclass
class TrainResult:
    config: TrainConfig
    parameters: int
    epochs_run: int
    seconds: float
    train: dict[str, float]
    test: dict[str, float]
    epochs_to_threshold: int | None  # first epoch after which the test metric reached the threshold
    seconds_to_threshold: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None


def evaluate(model: nn.Module, task: Task, points: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """The task's metrics over all ``points``, averaged with equal weight per example."""
    model.eval()
    totals: dict[str, float] = {}
    with torch.no_grad():
        for start in range(0, len(points), batch_size):
            batch = points[start : start + batch_size]
            for name, value in task.scores(model(task.inputs(batch)), batch).items():
                totals[name] = totals.get(name, 0.0) + value * len(batch)
    return {name: total / len(points) for name, total in totals.items()}


def train(config: TrainConfig, progress: bool = True, writer=None) -> TrainResult:
    """Train ``config.model`` on ``config.task``/``config.split``.

    The test metrics are measured after every epoch to time when the task is solved (the paper's
    "time to reach" comparison); nothing is selected on them. Train metrics are measured at the end.
    """
    task = TASKS.get(config.task)
    if task is None:
        raise ValueError(f"unknown task {config.task!r}; choose one of {tuple(TASKS)}")
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; choose one of {MODELS}")
    epochs = config.epochs if config.epochs is not None else DEFAULT_EPOCHS[config.model]
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model_ = build_model(config.task, config.model).to(device)
    data = NotSoClevr.build(config.split, config.seed, device)
    learning_rate = config.learning_rate or DEFAULT_LEARNING_RATE[config.model]
    config = dataclasses.replace(config, epochs=epochs, learning_rate=learning_rate)  # as run, for the report
    optimizer = torch.optim.Adam(model_.parameters(), lr=learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(data.train_points) // config.batch_size)
    # Cosine decay to zero over the whole budget: a short budget still ends at a small step size.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)

    history: list[dict[str, float]] = []
    solved_at: tuple[int, float] | None = None
    start = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc=f"{config.task}/{config.split}/{config.model}", disable=not progress, leave=False)
    for epoch in bar:
        model_.train()
        order = torch.randperm(len(data.train_points), generator=generator).to(device)
        for batch_start in range(0, len(order), config.batch_size):
            batch = data.train_points[order[batch_start : batch_start + config.batch_size]]
            loss = task.loss(model_(task.inputs(batch)), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        test_scores = evaluate(model_, task, data.test_points)
        elapsed = time.perf_counter() - start
        history.append({"epoch": epoch, "seconds": elapsed, "train/loss": loss.item(),
                        **{f"test/{k}": v for k, v in test_scores.items()}})
        if writer is not None:
            for key, value in history[-1].items():
                if key != "epoch":
                    writer.add_scalar(key, value, epoch)
        bar.set_postfix({f"test {task.metric}": f"{test_scores[task.metric]:.3f}"})
        if solved_at is None and test_scores[task.metric] >= task.threshold:
            solved_at = (epoch, elapsed)
            if config.stop_when_solved:
                break
    seconds = time.perf_counter() - start
    return TrainResult(
        config=config,
        parameters=count_parameters(model_),
        epochs_run=len(history),
        seconds=seconds,
        train=evaluate(model_, task, data.train_points),
        test=test_scores,
        epochs_to_threshold=solved_at[0] if solved_at else None,
        seconds_to_threshold=solved_at[1] if solved_at else None,
        history=history,
        model=model_,
    )
