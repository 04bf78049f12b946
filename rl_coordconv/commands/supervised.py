"""Reproduce the CoordConv paper's supervised experiments on this machine.

    rl-coordconv supervised                       # Not-so-Clevr: all tasks, both splits, both models (~30 min)
    rl-coordconv supervised --model coordconv     # CoordConv only (~3 min)
    rl-coordconv supervised --model conv          # the paper's deconv and conv models only
    rl-coordconv supervised --task rendering --split quadrant --epochs 3 --no-early-stop
    rl-coordconv supervised --experiment vae      # a VAE on Sort-of-CLEVR scenes, conv vs CoordConv, 3 seeds
    rl-coordconv supervised --experiment gan      # a GAN on the same scenes, 3 seeds
    rl-coordconv supervised --experiment classification   # the "what" control: digits, 5 seeds
    rl-coordconv supervised --experiment detection        # Faster R-CNN on scattered digits, 3 seeds
                                                          # (needs torchvision: make detection-venv)
    rl-coordconv supervised --experiment vae --seeds 1    # one seed per model (no intervals)
    rl-coordconv supervised --experiment all --quick   # everything, tiny budgets (a smoke test)

Writes ``<out>/results.md``, ``results.csv``, the figures, and TensorBoard logs under
``<out>/tb/``; with ``--experiment all`` each experiment in ``<out>/<experiment>/`` and the
reports joined in ``<out>/results.md`` (detection only where torchvision loads; it says so when not). ``<out>`` defaults to a new ``runs/supervised/<date-time>``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from rl_coordconv.commands import HelpFormatter
from rl_coordconv.devices import check_device
from rl_coordconv.supervised import (
    MODELS,
    SPLITS,
    TASKS,
    TrainConfig,
    classification,
    detection,
    detection_report,
    generative_report,
    train,
)
from rl_coordconv.supervised.archs import ARCHS
from rl_coordconv.supervised.generative import EXPERIMENTS, GenerativeConfig, train_generative
from rl_coordconv.supervised.models import build_model, count_parameters
from rl_coordconv.supervised.report import markdown, save_figures, write_csv

NOT_SO_CLEVR = "not-so-clevr"
CLASSIFICATION = "classification"
DETECTION = "detection"
# Seeds per model when --seeds is not given: --seed, --seed + 1, ...; on 2 CPU cores the VAE's and
# the GAN's three take about 12 minutes for both models, the classification's five about 3.
DEFAULT_SEEDS = {CLASSIFICATION: 5, "vae": 3, "gan": 3, DETECTION: 3, NOT_SO_CLEVR: 1}
# Runs at once when --jobs is not given: the detectors' steps gain most from it (see train_runs);
# the others' committed results were measured one run at a time, and repeat so.
DEFAULT_JOBS = {DETECTION: 2}
QUICK_SEEDS = {CLASSIFICATION: 2, "vae": 1, "gan": 1, DETECTION: 1, NOT_SO_CLEVR: 1}  # 2: the interval's code path
# What --quick changes: budgets small enough for a test, the same code paths.
QUICK_GENERATIVE = dict(train_scenes=256, test_scenes=64, epochs=1, samples=64, interpolations=4, steps=6)
QUICK_DETECTION = dict(train_canvases=64, test_canvases=16, epochs=1)
EXPERIMENT_NAMES = [NOT_SO_CLEVR, *EXPERIMENTS, CLASSIFICATION, DETECTION]
BUDGET_OPTIONS = ("epochs", "learning_rate", "batch_size")  # every experiment's config has them
NOT_SO_CLEVR_OPTIONS = ("task", "split", "model", "checks_per_epoch", "no_early_stop")
RENAMED_MODELS = {"baseline": "conv"}  # --model values renamed, old -> new: the old still work, with a warning


def expand(choice: str, every: tuple[str, ...], word: str) -> list[str]:
    return list(every) if choice == word else [choice]


def model_name(name: str) -> str:
    """``--model``'s value under its current name, with a ``FutureWarning`` for a renamed one."""
    if name in RENAMED_MODELS:
        warnings.warn(
            f"--model {name} is now --model {RENAMED_MODELS[name]}; the old name will go in a later version",
            FutureWarning,
            stacklevel=2,
        )
    return RENAMED_MODELS.get(name, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rl-coordconv supervised", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--experiment", default=NOT_SO_CLEVR, choices=[*EXPERIMENT_NAMES, "all"])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that everything runs and writes its files")
    parser.add_argument("--task", default="all", choices=[*TASKS, "all"], help="Not-so-Clevr task")
    parser.add_argument("--split", default="both", choices=[*SPLITS, "both"])
    parser.add_argument("--model", default="both", type=model_name, choices=[*MODELS, "both"], help="Not-so-Clevr model")
    parser.add_argument("--epochs", type=int, default=None, help="epoch budget per run (default: per experiment and model)")
    parser.add_argument("--learning-rate", type=float, default=None, help="(default: per experiment)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="(default: 16 for not-so-clevr and detection, 64 for the others)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per model, from --seed on (default: 5 for classification, 3 for vae and gan, "
        "3 for detection, 1 for not-so-clevr)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="runs at once, each in its own process with cpu_count / jobs threads (default: 2 for "
        "detection, 1 for the others)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1")
    parser.add_argument("--checks-per-epoch", type=int, default=4, help="test evaluations per epoch (timing resolution)")
    parser.add_argument("--no-early-stop", action="store_true", help="train the whole budget even when solved")
    parser.add_argument("--out", default=None, help="output folder (default: runs/supervised/<date-time>)")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        print(f"error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    try:
        check_device(args.device, allow_auto=False)
        experiments = chosen_experiments(args.experiment)
        if NOT_SO_CLEVR not in experiments:
            for name in NOT_SO_CLEVR_OPTIONS:
                if getattr(args, name) != parser.get_default(name):
                    raise ValueError(f"--{name.replace('_', '-')} applies to --experiment {NOT_SO_CLEVR} only")
        plans = {experiment: plan(experiment, args) for experiment in experiments}
    except (ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs/supervised") / time.strftime("%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} is not empty; choose another --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}"
    )
    reports = []
    for experiment, configs in plans.items():
        folder = out / experiment if len(plans) > 1 else out
        folder.mkdir(exist_ok=True)
        run = {NOT_SO_CLEVR: run_not_so_clevr, CLASSIFICATION: run_classification, DETECTION: run_detection}.get(
            experiment, run_generative
        )
        reports.append(run(configs, folder, machine, jobs(experiment, args)))
    if len(plans) > 1:
        (out / "results.md").write_text("\n\n".join(reports))
    print(f"\n{(out / 'results.md').read_text()}\nWritten: {out / 'results.md'}; TensorBoard: tensorboard --logdir {out}")
    return 0


def jobs(experiment: str, args: argparse.Namespace) -> int:
    """Runs of ``experiment`` at once: ``--jobs``, else its default."""
    return args.jobs if args.jobs is not None else DEFAULT_JOBS.get(experiment, 1)


def chosen_experiments(choice: str) -> list[str]:
    """The experiments ``--experiment choice`` runs: ``all`` is every one that can run here."""
    if choice != "all":
        return [choice]
    if detection.available():
        return EXPERIMENT_NAMES
    print("note: --experiment all leaves out detection: torchvision does not load here (make detection-venv)", flush=True)
    return [experiment for experiment in EXPERIMENT_NAMES if experiment != DETECTION]


def plan(experiment: str, args: argparse.Namespace) -> list:
    """The validated configs of one experiment's runs."""
    count = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else DEFAULT_SEEDS)[experiment]
    if count < 1:
        raise ValueError(f"--seeds must be >= 1, got {count}")
    if experiment == NOT_SO_CLEVR and count > 1:
        raise ValueError(f"--seeds {count}: the Not-so-Clevr report is of one seed; run it once per --seed instead")
    seeds = range(args.seed, args.seed + count)
    given = {name: getattr(args, name) for name in BUDGET_OPTIONS if getattr(args, name) is not None}
    if experiment == NOT_SO_CLEVR:
        budget = {**({"epochs": 1} if args.quick else {}), **given}
        configs = [
            TrainConfig(
                task,
                split,
                model,
                seed=args.seed,
                device=args.device,
                stop_when_solved=not args.no_early_stop,
                checks_per_epoch=args.checks_per_epoch,
                **budget,
            )
            for task in expand(args.task, tuple(TASKS), "all")
            for split in expand(args.split, SPLITS, "both")
            for model in expand(args.model, MODELS, "both")
        ]
    elif experiment == CLASSIFICATION:
        budget = {**({"epochs": 1} if args.quick else {}), **given}
        configs = [
            classification.ClassificationConfig(arch, seed, device=args.device, **budget) for seed in seeds for arch in ARCHS
        ]
    elif experiment == DETECTION:
        detection.require_torchvision()
        budget = {**(QUICK_DETECTION if args.quick else {}), **given}
        configs = [detection.DetectionConfig(arch, seed, device=args.device, **budget) for seed in seeds for arch in ARCHS]
    else:
        budget = {**(QUICK_GENERATIVE if args.quick else {}), **given}
        configs = [
            GenerativeConfig(experiment, arch, seed=seed, device=args.device, **budget) for seed in seeds for arch in ARCHS
        ]
    for config in configs:
        config.validate()
    return configs


def train_runs(train: Callable, configs: list, tb_dirs: list[Path], jobs: int, report: Callable[[Any], None]) -> list:
    """``train(config, progress=..., writer=...)`` of each config, logging to its TensorBoard folder;
    the results in the configs' order, and ``report(result)`` as each finishes. With ``jobs > 1``,
    that many run at once in worker processes of ``cpu_count // jobs`` torch threads each: on 2
    cores, two one-thread detector runs get through 1.6x the steps of one two-thread run."""
    if jobs == 1:
        results = []
        for config, tb_dir in zip(configs, tb_dirs, strict=True):
            results.append(_train_logged(train, config, tb_dir, progress=True))
            report(results[-1])
        return results
    threads = max(1, (os.cpu_count() or 1) // jobs)
    results = [None] * len(configs)
    with ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=torch.set_num_threads, initargs=(threads,)
    ) as pool:
        futures = {
            pool.submit(_train_logged, train, config, tb_dir, False): index
            for index, (config, tb_dir) in enumerate(zip(configs, tb_dirs, strict=True))
        }
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"runs, {jobs} at a time", leave=False):
            results[futures[future]] = future.result()
            report(results[futures[future]])
    return results


def _train_logged(train: Callable, config, tb_dir: Path, progress: bool):
    with SummaryWriter(str(tb_dir)) as writer:
        return train(config, progress=progress, writer=writer)


def run_not_so_clevr(configs: list[TrainConfig], out: Path, machine: str, jobs: int) -> str:
    def report(result) -> None:
        config, metric = result.config, TASKS[result.config.task].metric
        solved = (
            f"solved after {result.epochs_to_threshold:.2f} epochs, {result.seconds_to_threshold:.1f} s"
            if result.epochs_to_threshold is not None
            else "not solved"
        )
        tqdm.write(
            f"{config.task:14s} {config.split:8s} {config.model:9s} ({count_parameters(build_model(config.task, config.model)):,} "
            f"parameters): train {metric} {result.train[metric]:.4f}, test {metric} {result.test[metric]:.4f}, "
            f"{result.epochs_run:.2f} epochs in {result.seconds:.1f} s: {solved}"
        )

    tb_dirs = [out / "tb" / f"{c.task}-{c.split}-{c.model}" for c in configs]
    results = train_runs(train, configs, tb_dirs, jobs, report)
    write_csv(results, out / "results.csv")
    report_text = markdown(results, machine)
    (out / "results.md").write_text(report_text)
    save_figures(results, out)
    return report_text


def run_classification(configs: list[classification.ClassificationConfig], out: Path, machine: str, jobs: int) -> str:
    def report(result) -> None:
        tqdm.write(
            f"classification {result.config.arch} seed {result.config.seed}: test accuracy {result.test_accuracy:.4f} "
            f"(train {result.train_accuracy:.4f}) in {result.seconds:.1f} s"
        )

    tb_dirs = [out / "tb" / f"classification-{c.arch}-seed{c.seed}" for c in configs]
    results = train_runs(classification.train_classifier, configs, tb_dirs, jobs, report)
    with (out / "results.csv").open("w") as file:
        file.write("experiment,arch,seed,parameters,epochs,seconds,train_accuracy,test_accuracy\n")
        for r in results:
            file.write(
                f"classification,{r.config.arch},{r.config.seed},{r.parameters},{r.config.epochs},{r.seconds:.1f},"
                f"{r.train_accuracy:.4f},{r.test_accuracy:.4f}\n"
            )
    report_text = classification.markdown(results, machine)
    (out / "results.md").write_text(report_text)
    return report_text


def run_detection(configs: list[detection.DetectionConfig], out: Path, machine: str, jobs: int) -> str:
    def report(result) -> None:
        tqdm.write(
            f"detection {result.config.arch} seed {result.config.seed}: "
            + ", ".join(f"{name} {value:.3f}" for name, value in result.metrics.items())
            + f" in {result.seconds:.0f} s"
        )

    tb_dirs = [out / "tb" / f"detection-{c.arch}-seed{c.seed}" for c in configs]
    results = train_runs(detection.train_detector, configs, tb_dirs, jobs, report)
    detection_report.write_csv(results, out / "results.csv")
    report_text = detection_report.markdown(results, machine)
    (out / "results.md").write_text(report_text)
    detection_report.save_figure(results, out / "detection-examples.png")
    return report_text


def run_generative(configs: list[GenerativeConfig], out: Path, machine: str, jobs: int) -> str:
    def report(result) -> None:
        config = result.config
        tqdm.write(
            f"{config.experiment} {config.arch} seed {config.seed} ({config.epochs} epochs of {config.train_scenes:,} scenes): "
            + ", ".join(f"{name} {value:.3f}" for name, value in result.metrics.items())
        )

    tb_dirs = [out / "tb" / f"{c.experiment}-{c.arch}-seed{c.seed}" for c in configs]
    results = train_runs(train_generative, configs, tb_dirs, jobs, report)
    generative_report.write_csv(results, out / "results.csv")
    report = f"## {configs[0].experiment.upper()} on Sort-of-CLEVR scenes ({machine})\n\n" + generative_report.markdown(
        results
    )
    (out / "results.md").write_text(report)
    generative_report.save_figures(results, out)
    return report


if __name__ == "__main__":
    sys.exit(main())
