"""Reproduce the CoordConv paper's supervised Not-so-Clevr results on this machine.

    rl-coordconv supervised                       # all tasks, both splits, both models (~30 min)
    rl-coordconv supervised --model coordconv     # CoordConv only (~3 min)
    rl-coordconv supervised --task rendering --split quadrant --epochs 3 --no-early-stop

Writes ``<out>/results.md``, ``results.csv``, one figure per task and split, and TensorBoard
logs under ``<out>/tb/<task>-<split>-<model>``. ``<out>`` defaults to a new
``runs/supervised/<date-time>``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from rl_coordconv.commands import HelpFormatter
from rl_coordconv.supervised import MODELS, SPLITS, TASKS, TrainConfig, train
from rl_coordconv.supervised.models import build_model, count_parameters
from rl_coordconv.supervised.report import markdown, save_figures, write_csv


def expand(choice: str, every: tuple[str, ...], word: str) -> list[str]:
    return list(every) if choice == word else [choice]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rl-coordconv supervised",
                                     description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--task", default="all", choices=[*TASKS, "all"])
    parser.add_argument("--split", default="both", choices=[*SPLITS, "both"])
    parser.add_argument("--model", default="both", choices=[*MODELS, "both"])
    parser.add_argument("--epochs", type=int, default=None, help="epoch budget per run (default: per model)")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1")
    parser.add_argument("--checks-per-epoch", type=int, default=4, help="test evaluations per epoch (timing resolution)")
    parser.add_argument("--no-early-stop", action="store_true", help="train the whole budget even when solved")
    parser.add_argument("--out", default=None, help="output folder (default: runs/supervised/<date-time>)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device} but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    configs = [
        TrainConfig(task, split, model, epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
                    seed=args.seed, device=args.device, stop_when_solved=not args.no_early_stop,
                    checks_per_epoch=args.checks_per_epoch)
        for task in expand(args.task, tuple(TASKS), "all")
        for split in expand(args.split, SPLITS, "both")
        for model in expand(args.model, MODELS, "both")
    ]
    try:
        for config in configs:
            config.validate()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs/supervised") / time.strftime("%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} is not empty; choose another --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)

    results = []
    for config in configs:
        task, split, model = config.task, config.split, config.model
        print(f"{task:14s} {split:8s} {model:9s} ({count_parameters(build_model(task, model)):,} parameters) ...", flush=True)
        with SummaryWriter(str(out / "tb" / f"{task}-{split}-{model}")) as writer:
            result = train(config, writer=writer)
        metric = TASKS[task].metric
        solved = f"solved after {result.epochs_to_threshold:.2f} epochs, {result.seconds_to_threshold:.1f} s" \
            if result.epochs_to_threshold is not None else "not solved"
        print(f"    train {metric} {result.train[metric]:.4f}, test {metric} {result.test[metric]:.4f}, "
              f"{result.epochs_run:.2f} epochs in {result.seconds:.1f} s: {solved}", flush=True)
        results.append(result)

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}"
    write_csv(results, out / "results.csv")
    (out / "results.md").write_text(markdown(results, machine))
    figures = save_figures(results, out)
    print(f"\n{(out / 'results.md').read_text()}\nWritten: {out / 'results.md'}, {out / 'results.csv'}, "
          f"{len(figures)} figures; TensorBoard: tensorboard --logdir {out / 'tb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
