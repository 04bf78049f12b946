"""The training loop of every supervised experiment: epochs of seeded batches, the progress bar,
TensorBoard, and the experiment's checks, with early stopping, at the points it asks for.

The experiment brings what differs: a step function that trains on one batch (its model, its
optimizers: the GAN's step updates two networks in turn) and returns the losses to log, the
learning-rate schedule, and the check it runs on held-out data."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm.auto import tqdm

Step = Callable[[torch.Tensor], Mapping[str, "torch.Tensor | float"]]  # (B,) indices -> losses by name


def batches_per_epoch(train_size: int, batch_size: int) -> int:
    """Batches in one pass over ``train_size`` examples, the last one possibly short."""
    return -(-train_size // batch_size)


def minimize(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One update of ``optimizer`` down the gradient of ``loss``, the previous gradients cleared."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _number(value: torch.Tensor | float) -> float:
    """A loss as a Python float, off the autograd graph (read only where logged: on a GPU, a sync)."""
    return value.detach().item() if isinstance(value, torch.Tensor) else float(value)


def check_steps(steps_per_epoch: int, checks_per_epoch: int) -> set[int]:
    """The steps of an epoch (1-based) after which the checks run: ``checks_per_epoch`` evenly
    spread, the last at the epoch's end (fewer when an epoch has fewer steps)."""
    return {round(k * steps_per_epoch / checks_per_epoch) for k in range(1, checks_per_epoch + 1)}


@dataclass
class FitResult:
    steps: int  # batches trained on: calls of the step function
    seconds: float  # training time, checks excluded
    # One record per check: "epoch" (epochs done, fractional within an epoch), "seconds" (training
    # time so far), "train/<loss>" (the losses of the step before it) and what the check returned.
    history: list[dict[str, float]]

    @property
    def epochs(self) -> float:
        """Epochs done: fewer than asked for when stopped early."""
        return self.history[-1]["epoch"]


def fit(
    model: nn.Module,
    step: Step,
    train_size: int,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    check: Callable[[], Mapping[str, float]] | None = None,
    checks_per_epoch: int = 1,
    check_every: int = 1,
    stop: Callable[[dict[str, float]], bool] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    description: str = "",
    writer=None,
) -> FitResult:
    """Train ``model`` for ``epochs`` passes over ``train_size`` examples, ``batch_size`` at a time.

    :param step: trains on one batch, given its ``(B,)`` int64 example indices on ``device``, and
        returns its losses by name. Each epoch draws one order,
        ``torch.randperm(train_size, generator=generator)``, and cuts it into batches, the last
        one short; a generator seeded per run gives each run its own repeatable order.
    :param schedule: stepped after every batch.
    :param check: run ``checks_per_epoch`` times per epoch (see :func:`check_steps`), the model in
        whatever mode it sets, put back in training mode after; returns values by TensorBoard tag
        (``{"test/accuracy": 0.98}``). Each check point appends a record to the history (see
        :class:`FitResult`), with or without a ``check``.
    :param check_every: run ``check`` in every ``check_every``-th epoch (epochs ``check_every``,
        ``2 check_every``, ...) and in the last; the other epochs' check points record without it.
    :param stop: ends training at a check point whose record it is true of.
    :param progress: show a tqdm bar of the steps, with the last record's values.
    :param writer: TensorBoard ``SummaryWriter``: each step's losses as ``train/<name>`` and each
        record's ``seconds`` and check values, at the step count (1-based).
    :return: the steps and training seconds (the clock stops during checks) and the history.
    """
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1 epoch, got {check_every!r}")
    steps_per_epoch = batches_per_epoch(train_size, batch_size)
    checked_after = check_steps(steps_per_epoch, checks_per_epoch)
    history: list[dict[str, float]] = []
    steps, checking_seconds, start = 0, 0.0, time.perf_counter()

    def training_seconds() -> float:
        return time.perf_counter() - start - checking_seconds

    with tqdm(total=epochs * steps_per_epoch, desc=description, disable=not progress, leave=False, unit="step") as bar:
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(train_size, generator=generator).to(device)
            for epoch_step, indices in enumerate(order.split(batch_size), start=1):
                losses = step(indices)
                if schedule is not None:
                    schedule.step()
                steps += 1
                bar.update()
                if writer is not None:
                    for name, value in losses.items():
                        writer.add_scalar(f"train/{name}", _number(value), steps)
                if epoch_step not in checked_after:
                    continue
                check_start = time.perf_counter()
                checking = check is not None and ((epoch + 1) % check_every == 0 or epoch + 1 == epochs)
                checked = check() if checking else {}
                model.train()
                checking_seconds += time.perf_counter() - check_start
                record = {
                    "epoch": epoch + epoch_step / steps_per_epoch,
                    "seconds": training_seconds(),
                    **{f"train/{name}": _number(value) for name, value in losses.items()},
                    **checked,
                }
                history.append(record)
                if writer is not None:
                    for tag, value in {"seconds": record["seconds"], **checked}.items():
                        writer.add_scalar(tag, value, steps)
                bar.set_postfix({tag: f"{value:.3g}" for tag, value in record.items() if tag != "epoch"})
                if stop is not None and stop(record):
                    return FitResult(steps, training_seconds(), history)
    return FitResult(steps, training_seconds(), history)
