"""Training and evaluation of one Not-so-Clevr model on one task and split."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from rl_coordconv.supervised import metrics
from rl_coordconv.supervised.data import (
    CANVAS,
    SPLITS,
    NotSoClevr,
    normalized_coordinates,
    one_hot_images,
    square_images,
    unit_coordinates,
)
from rl_coordconv.supervised.fitting import batches_per_epoch, fit, minimize
from rl_coordconv.supervised.models import MODELS, Rendering, build_model, count_parameters
from rl_coordconv.supervised.settings import validate_settings


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


def _rendering_loss(outputs: Rendering, points: torch.Tensor) -> torch.Tensor:
    """Per-pixel sigmoid cross-entropy on the square, plus the intermediate softmax cross-entropy
    on the centre where the model has one (the official ``-sig --interm_loss softmax``)."""
    loss = F.binary_cross_entropy_with_logits(outputs.image_logits, square_images(points).flatten(1))
    if outputs.centre_logits is not None:
        loss = loss + F.cross_entropy(outputs.centre_logits, _pixel_index(points))
    return loss


TASKS: dict[str, Task] = {
    "classification": Task(
        "classification",
        "accuracy",
        1.0,
        inputs=normalized_coordinates,
        loss=lambda outputs, points: F.cross_entropy(outputs, _pixel_index(points)),
        scores=lambda outputs, points: {"accuracy": metrics.accuracy(outputs, _pixel_index(points))},
    ),
    "rendering": Task(
        "rendering",
        "iou",
        0.99,
        inputs=normalized_coordinates,
        loss=_rendering_loss,
        scores=lambda outputs, points: {"iou": metrics.iou(outputs.image_logits, square_images(points).flatten(1))},
    ),
    "regression": Task(
        "regression",
        "pixel_accuracy",
        0.99,
        inputs=one_hot_images,
        loss=lambda outputs, points: F.mse_loss(outputs, unit_coordinates(points)),
        scores=lambda outputs, points: {
            "pixel_accuracy": metrics.pixel_accuracy(outputs, points),
            "mse_pixels": metrics.squared_error_pixels(outputs, points),
        },
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
    checks_per_epoch: int = 4  # test evaluations per epoch, to time when the task is solved

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting and what is accepted."""
        validate_settings(
            self, {"task": TASKS, "model": MODELS, "split": SPLITS}, ("epochs", "batch_size", "checks_per_epoch")
        )


class Budget(NamedTuple):
    epochs: int
    learning_rate: float


# Official settings: Adam, CoordConv lr 0.005 (regression 0.01) for 100 epochs; deconv lr 0.01 for
# up to 2000 epochs; conv regressor lr 0.01 for 100 epochs. Scaled to a 2-core CPU with a cosine
# decay over the budget: CoordConv models get 2-4 epochs (they need 1-2); the conv models 15-30x as
# many epochs, 5-15x the wall-clock time.
DEFAULT_BUDGETS: dict[tuple[str, str], Budget] = {
    ("classification", "coordconv"): Budget(4, 0.005),
    ("classification", "conv"): Budget(60, 0.01),
    ("rendering", "coordconv"): Budget(2, 0.02),
    ("rendering", "conv"): Budget(60, 0.01),
    ("regression", "coordconv"): Budget(2, 0.01),
    ("regression", "conv"): Budget(60, 0.01),
}


@dataclass
class TrainResult:
    config: TrainConfig
    parameters: int
    epochs_run: float  # may end mid-epoch when solved
    seconds: float  # training time, test checks excluded
    train: dict[str, float]
    test: dict[str, float]
    epochs_to_threshold: float | None  # first check (in epochs) at which the test metric reached the threshold
    seconds_to_threshold: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None


def evaluate(model: nn.Module, task: Task, points: torch.Tensor, batch_size: int = 16) -> dict[str, float]:
    """The task's metrics over all ``points``, averaged with equal weight per example.

    Small batches: the per-pixel CoordConv models' activations stay in cache (batch 16 runs about
    2x faster on CPU than 256)."""
    model.eval()
    totals: dict[str, float] = {}
    with torch.no_grad():
        for start in range(0, len(points), batch_size):
            batch = points[start : start + batch_size]
            for name, value in task.scores(model(task.inputs(batch)), batch).items():
                totals[name] = totals.get(name, 0.0) + value * len(batch)
    return {name: total / len(points) for name, total in totals.items()}


def train(config: TrainConfig, progress: bool = True, writer=None) -> TrainResult:
    """Train ``config.model`` on ``config.task``/``config.split`` (Adam, cosine decay to zero).

    The test metrics are measured ``checks_per_epoch`` times per epoch to time when the task is
    solved (the paper's "time to reach" comparison); nothing is selected on them. The clock counts
    training only: it stops during these checks, so how often one checks does not change the time
    to solve. Train metrics are measured at the end.
    """
    config.validate()
    task = TASKS[config.task]
    budget = DEFAULT_BUDGETS[config.task, config.model]
    epochs = config.epochs if config.epochs is not None else budget.epochs
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config.task, config.model).to(device)
    data = NotSoClevr.build(config.split, config.seed, device)
    learning_rate = config.learning_rate if config.learning_rate is not None else budget.learning_rate
    config = dataclasses.replace(config, epochs=epochs, learning_rate=learning_rate)  # as run, for the report
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=config.weight_decay)
    # Cosine decay to zero over the whole budget: a short budget still ends at a small step size.
    steps = epochs * batches_per_epoch(len(data.train_points), config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)

    def step(indices: torch.Tensor) -> dict[str, torch.Tensor]:
        points = data.train_points[indices]
        loss = task.loss(model(task.inputs(points)), points)
        minimize(optimizer, loss)
        return {"loss": loss}

    def check() -> dict[str, float]:
        return {f"test/{name}": value for name, value in evaluate(model, task, data.test_points, config.batch_size).items()}

    def solved(record: dict[str, float]) -> bool:
        return record[f"test/{task.metric}"] >= task.threshold

    fitted = fit(
        model,
        step,
        len(data.train_points),
        epochs=epochs,
        batch_size=config.batch_size,
        generator=torch.Generator(device="cpu").manual_seed(config.seed),
        schedule=schedule,
        check=check,
        checks_per_epoch=config.checks_per_epoch,
        stop=solved if config.stop_when_solved else None,
        device=device,
        progress=progress,
        description=f"{config.task}/{config.split}/{config.model}",
        writer=writer,
    )
    solved_at = next((record for record in fitted.history if solved(record)), None)
    return TrainResult(
        config=config,
        parameters=count_parameters(model),
        epochs_run=fitted.epochs,
        seconds=fitted.seconds,
        train=evaluate(model, task, data.train_points, config.batch_size),
        test={tag.removeprefix("test/"): value for tag, value in fitted.history[-1].items() if tag.startswith("test/")},
        epochs_to_threshold=solved_at["epoch"] if solved_at else None,
        seconds_to_threshold=solved_at["seconds"] if solved_at else None,
        history=fitted.history,
        model=model,
    )
