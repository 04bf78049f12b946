"""The registry of the supervised experiments, and :func:`run`, what ``rl-coordconv supervised`` calls.

Each :class:`Experiment` says how the command's options become its runs' configs (seeds, budgets,
its own settings), how one run trains, and how its runs become its report, CSV and figures in
its folder. Adding an experiment is one entry of :data:`EXPERIMENTS`.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from rl_coordconv.devices import check_device
from rl_coordconv.supervised import (
    classification,
    classification_report,
    detection,
    detection_report,
    generative_report,
    report,
)
from rl_coordconv.supervised.archs import ARCHS
from rl_coordconv.supervised.data import SPLITS
from rl_coordconv.supervised.generative import GAN_SETTINGS, GenerativeConfig, train_generative
from rl_coordconv.supervised.models import MODELS, build_model, count_parameters
from rl_coordconv.supervised.parallel import train_runs
from rl_coordconv.supervised.plateau import PLATEAU_TOLERANCE, check_rule, same_budget
from rl_coordconv.supervised.train import TASKS, TrainConfig, train

NOT_SO_CLEVR = "not-so-clevr"
CLASSIFICATION = "classification"
DETECTION = "detection"
FINISHED_FOLDER = "finished"  # an experiment folder's finished runs' results, for --resume
BUDGET_OPTIONS = ("epochs", "learning_rate", "batch_size")  # every experiment's config has them
# The Not-so-Clevr options and the values that mean "not given" (the command's defaults).
NOT_SO_CLEVR_OPTIONS = {"task": "all", "split": "both", "model": "both", "checks_per_epoch": 4, "no_early_stop": False}
PLATEAU_OPTION = {"plateau_tolerance": None}  # None: PLATEAU_TOLERANCE
# What --quick changes: budgets small enough for a test, the same code paths.
QUICK_GENERATIVE = dict(train_scenes=256, test_scenes=64, epochs=1, samples=64, interpolations=4, steps=6)
QUICK_DETECTION = dict(train_canvases=64, test_canvases=16, epochs=1)


class RefusedOptions(ValueError):
    """The options name something the experiments do not accept, or cannot run here; nothing was
    trained or written."""


@dataclass(frozen=True)
class Experiment:
    """One experiment of the registry.

    :ivar seeds: seeds per model by default (``quick_seeds`` with ``--quick``).
    :ivar jobs: runs at once by default.
    :ivar quick: the config settings ``--quick`` gives.
    :ivar options: the command options that only some experiments take, this one among them, each
        with the value that means "not given".
    :ivar settings: those of ``options`` that go to the config as they are, when given.
    :ivar configs: ``(options, seeds, budget) -> configs``: the runs, ``budget`` the settings
        every run gets (``quick`` and the budget options given).
    :ivar one_budget: every run must get the same epoch budget (both models are compared at it).
    :ivar run_name: a config's TensorBoard folder under ``tb/``.
    :ivar announce: the line printed as a run finishes.
    :ivar write: ``(results, folder, machine, plateau tolerance) -> report``: writes the files.
    """

    name: str
    seeds: int
    quick_seeds: int
    jobs: int
    quick: dict[str, Any]
    configs: Callable[[Any, range, dict[str, Any]], list]
    train: Callable
    run_name: Callable[[Any], str]
    announce: Callable[[Any], str]
    write: Callable[[list, Path, str, float], str]
    options: dict[str, Any] = field(default_factory=dict)
    settings: tuple[str, ...] = ()
    one_budget: bool = False


def _expand(choice: str, every: Sequence[str], word: str) -> list[str]:
    return list(every) if choice == word else [choice]


def _given(options, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(options, name) for name in names if getattr(options, name, None) is not None}


# ----------------------------------------------------------------------------------------------------------------------
# Not-so-Clevr


def _not_so_clevr_configs(options, seeds: range, budget: dict[str, Any]) -> list[TrainConfig]:
    if len(seeds) > 1:
        raise ValueError(f"--seeds {len(seeds)}: the Not-so-Clevr report is of one seed; run it once per --seed instead")
    return [
        TrainConfig(
            task,
            split,
            model,
            seed=seeds[0],
            device=options.device,
            stop_when_solved=not options.no_early_stop,
            checks_per_epoch=options.checks_per_epoch,
            **budget,
        )
        for task in _expand(options.task, tuple(TASKS), "all")
        for split in _expand(options.split, SPLITS, "both")
        for model in _expand(options.model, MODELS, "both")
    ]


def _announce_not_so_clevr(result) -> str:
    config, metric = result.config, TASKS[result.config.task].metric
    solved = (
        f"solved after {result.epochs_to_threshold:.2f} epochs, {result.seconds_to_threshold:.1f} s"
        if result.epochs_to_threshold is not None
        else "not solved"
    )
    return (
        f"{config.task:14s} {config.split:8s} {config.model:9s} ({count_parameters(build_model(config.task, config.model)):,} "
        f"parameters): train {metric} {result.train[metric]:.4f}, test {metric} {result.test[metric]:.4f}, "
        f"{result.epochs_run:.2f} epochs in {result.seconds:.1f} s: {solved}"
    )


# ----------------------------------------------------------------------------------------------------------------------
# The classification control and detection


def _classification_configs(options, seeds: range, budget: dict[str, Any]) -> list:
    return [
        classification.ClassificationConfig(arch, seed, device=options.device, **budget) for seed in seeds for arch in ARCHS
    ]


def _announce_classification(result) -> str:
    return (
        f"classification {result.config.arch} seed {result.config.seed}: test accuracy {result.test_accuracy:.4f} "
        f"(train {result.train_accuracy:.4f}) in {result.seconds:.1f} s"
    )


def _detection_configs(options, seeds: range, budget: dict[str, Any]) -> list:
    detection.require_torchvision()
    return [detection.DetectionConfig(arch, seed, device=options.device, **budget) for seed in seeds for arch in ARCHS]


def _announce_detection(result) -> str:
    return (
        f"detection {result.config.arch} seed {result.config.seed}: "
        + ", ".join(f"{name} {value:.3f}" for name, value in result.metrics.items())
        + f" in {result.seconds:.0f} s"
    )


# ----------------------------------------------------------------------------------------------------------------------
# The VAE and the GAN


def _generative_configs(experiment: str, settings: Sequence[str]) -> Callable[[Any, range, dict[str, Any]], list]:
    def configs(options, seeds: range, budget: dict[str, Any]) -> list[GenerativeConfig]:
        given = _given(options, settings)
        return [
            GenerativeConfig(experiment, arch, seed=seed, device=options.device, **budget, **given)
            for seed in seeds
            for arch in ARCHS
        ]

    return configs


def _announce_generative(result) -> str:
    config = result.config
    return (
        f"{config.experiment} {config.arch} seed {config.seed} ({config.epochs} epochs of {config.train_scenes:,} scenes): "
        + (", ".join(f"{name} {value:.3f}" for name, value in result.metrics.items()))
    )


def _generative(experiment: str, settings: tuple[str, ...]) -> Experiment:
    return Experiment(
        experiment,
        seeds=3,
        quick_seeds=1,
        jobs=1,
        quick=QUICK_GENERATIVE,
        configs=_generative_configs(experiment, settings),
        train=train_generative,
        run_name=lambda c: f"{c.experiment}-{c.arch}-seed{c.seed}",
        announce=_announce_generative,
        write=generative_report.write_report,
        options={**{name: None for name in settings}, **PLATEAU_OPTION},
        settings=settings,
        one_budget=True,
    )


# The committed results were measured one run at a time, and repeat so; the detectors' steps gain
# most from two at once (see train_runs).
EXPERIMENTS: dict[str, Experiment] = {
    NOT_SO_CLEVR: Experiment(
        NOT_SO_CLEVR,
        seeds=1,
        quick_seeds=1,
        jobs=1,
        quick={"epochs": 1},
        configs=_not_so_clevr_configs,
        train=train,
        run_name=lambda c: f"{c.task}-{c.split}-{c.model}",
        announce=_announce_not_so_clevr,
        write=lambda results, folder, machine, tolerance: report.write_report(results, folder, machine),
        options=NOT_SO_CLEVR_OPTIONS,
    ),
    "vae": _generative("vae", ("measure_every",)),
    "gan": _generative("gan", ("measure_every", *GAN_SETTINGS)),
    CLASSIFICATION: Experiment(
        CLASSIFICATION,
        seeds=5,  # about 3 minutes for both models on 2 CPU cores
        quick_seeds=2,  # 2: the interval's code path
        jobs=1,
        quick={"epochs": 1},
        configs=_classification_configs,
        train=classification.train_classifier,
        run_name=lambda c: f"classification-{c.arch}-seed{c.seed}",
        announce=_announce_classification,
        write=lambda results, folder, machine, tolerance: classification_report.write_report(results, folder, machine),
    ),
    DETECTION: Experiment(
        DETECTION,
        seeds=5,
        quick_seeds=1,
        jobs=2,
        quick=QUICK_DETECTION,
        configs=_detection_configs,
        train=detection.train_detector,
        run_name=lambda c: f"detection-{c.arch}-seed{c.seed}",
        announce=_announce_detection,
        write=detection_report.write_report,
        options=dict(PLATEAU_OPTION),
        one_budget=True,
    ),
}
EXPERIMENT_NAMES = list(EXPERIMENTS)


# ----------------------------------------------------------------------------------------------------------------------
# Planning and running


def chosen_experiments(choice: str) -> list[str]:
    """The experiments ``--experiment choice`` runs: ``all`` is every one that can run here."""
    if choice != "all":
        return [choice]
    if detection.available():
        return EXPERIMENT_NAMES
    print("note: --experiment all leaves out detection: torchvision does not load here (make detection-venv)", flush=True)
    return [name for name in EXPERIMENT_NAMES if name != DETECTION]


def check_options_apply(chosen: Sequence[str], options) -> None:
    """Raise ``ValueError`` for an option given that none of the ``chosen`` experiments takes,
    naming the experiments that do."""
    for name in dict.fromkeys(option for experiment in EXPERIMENTS.values() for option in experiment.options):
        takers = [experiment for experiment in EXPERIMENTS.values() if name in experiment.options]
        if getattr(options, name, takers[0].options[name]) == takers[0].options[name]:
            continue
        if not any(name in EXPERIMENTS[experiment].options for experiment in chosen):
            names = [experiment.name for experiment in takers]
            names = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            raise ValueError(f"--{name.replace('_', '-')} applies to --experiment {names} only")


def plan(name: str, options) -> list:
    """The validated configs of experiment ``name``'s runs under the command's ``options``."""
    experiment = EXPERIMENTS[name]
    count = options.seeds if options.seeds is not None else (experiment.quick_seeds if options.quick else experiment.seeds)
    if count < 1:
        raise ValueError(f"--seeds must be >= 1, got {count}")
    budget = {**(experiment.quick if options.quick else {}), **_given(options, BUDGET_OPTIONS)}
    configs = experiment.configs(options, range(options.seed, options.seed + count), budget)
    for config in configs:
        config.validate()
    if experiment.one_budget:
        same_budget(configs)
    return configs


def jobs(name: str, options) -> int:
    """Runs of experiment ``name`` at once: ``options.jobs``, else its default."""
    return options.jobs if options.jobs is not None else EXPERIMENTS[name].jobs


def finished_path(folder: Path, run_name: str) -> Path:
    """Where a finished run's result is kept, for a resumed command to read instead of training it."""
    return folder / FINISHED_FOLDER / f"{run_name}.pt"


def _save_finished(config, result, path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"config": config, "result": result}, partial)
    partial.replace(path)  # atomic: a run killed while saving leaves no half-written result


def _load_finished(path: Path, config):
    """The result kept in ``path``, refused unless the run was planned with ``config`` (a result's
    own config may hold the defaults it resolved)."""
    finished = torch.load(path, weights_only=False)  # our own file: dataclasses holding tensors
    if finished["config"] != config:
        differences = [
            f"{name} {getattr(finished['config'], name, None)!r} -> {getattr(config, name)!r}"
            for name in vars(config)
            if getattr(finished["config"], name, None) != getattr(config, name)
        ]
        raise ValueError(
            f"--resume with other settings than the finished run {path.stem} ({', '.join(differences)}); "
            "resume with the command line that started it"
        )
    return finished["result"]


def run_experiment(
    name: str,
    configs: list,
    folder: Path,
    machine: str,
    jobs: int,
    tolerance: float,
    resume: bool = False,
    progress: bool = True,
) -> str:
    """Train the runs of ``configs``, ``jobs`` at once, logging each to ``folder/tb/<run>``; write
    the experiment's files into ``folder`` and return its report.

    Each run's result is kept in ``folder/finished/<run>.pt`` as it finishes. With ``resume``, a
    run whose result is there is read rather than trained (its config must be the one planned);
    the others train from the start, their TensorBoard folders cleared of the events an
    interrupted attempt left."""
    experiment = EXPERIMENTS[name]
    paths = [finished_path(folder, experiment.run_name(config)) for config in configs]
    results = [_load_finished(path, config) if resume and path.exists() else None for path, config in zip(paths, configs)]
    to_train = [index for index, result in enumerate(results) if result is None]
    for result in results:
        if result is not None:
            tqdm.write(f"{experiment.announce(result)} (finished before)")
    tb_dirs = [folder / "tb" / experiment.run_name(configs[index]) for index in to_train]
    for tb_dir in tb_dirs:
        shutil.rmtree(tb_dir, ignore_errors=True)

    def finished(trained_index: int, result) -> None:
        index = to_train[trained_index]
        _save_finished(configs[index], result, paths[index])
        tqdm.write(experiment.announce(result))

    trained = train_runs(experiment.train, [configs[index] for index in to_train], tb_dirs, jobs, finished, progress)
    for index, result in zip(to_train, trained, strict=True):
        results[index] = result
    return experiment.write(results, folder, machine, tolerance)


def _prepare(options) -> tuple[dict[str, list], Path, float]:
    if options.jobs is not None and options.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {options.jobs}")
    check_device(options.device, allow_auto=False)
    chosen = chosen_experiments(options.experiment)
    check_options_apply(chosen, options)
    tolerance = PLATEAU_TOLERANCE if getattr(options, "plateau_tolerance", None) is None else options.plateau_tolerance
    check_rule(tolerance)
    plans = {name: plan(name, options) for name in chosen}
    resume = getattr(options, "resume", False)
    if resume and not options.out:
        raise ValueError("--resume needs the --out of the command to continue")
    out = Path(options.out or Path("runs/supervised") / time.strftime("%Y%m%d-%H%M%S"))
    if resume and not out.is_dir():
        raise ValueError(f"nothing to resume: {out} does not exist")
    if not resume and out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; choose another --out, or continue its runs with --resume")
    if resume:
        for name, configs in plans.items():
            folder = experiment_folder(out, name, len(plans))
            if (folder / "results.md").exists():  # resuming would retrain into a finished command's records
                raise ValueError(f"nothing to resume: {folder} holds the results.md of a command that finished")
            for config in configs:
                path = finished_path(folder, EXPERIMENTS[name].run_name(config))
                if path.exists():
                    _load_finished(path, config)  # refuses other settings before anything trains
    return plans, out, tolerance


def experiment_folder(out: Path, name: str, experiments: int) -> Path:
    """Experiment ``name``'s folder in the command's ``out``: ``out`` itself when it runs alone."""
    return out / name if experiments > 1 else out


def run(options) -> Path:
    """Run the experiments the command's ``options`` choose and write their files under
    ``options.out`` (default ``runs/supervised/<date-time>``): each experiment's ``results.md``,
    ``results.csv``, figures and ``tb/``, in ``<out>/<experiment>/`` when there are several, their
    reports joined in ``<out>/results.md``. Returns the path of that ``results.md``. With
    ``options.resume``, the runs of ``options.out`` that finished are read, not trained again
    (see :func:`run_experiment`).

    :raises RefusedOptions: before anything is trained or written, naming the bad option and what
        is accepted (or why the experiment cannot run here).
    """
    try:
        plans, out, tolerance = _prepare(options)
    except (ValueError, ImportError) as error:
        raise RefusedOptions(str(error)) from error
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {options.device}"
    reports = []
    for name, configs in plans.items():
        folder = experiment_folder(out, name, len(plans))
        folder.mkdir(exist_ok=True)
        reports.append(
            run_experiment(
                name,
                configs,
                folder,
                machine,
                jobs(name, options),
                tolerance,
                resume=getattr(options, "resume", False),
                progress=not getattr(options, "no_progress", False),
            )
        )
    if len(plans) > 1:
        (out / "results.md").write_text("\n\n".join(reports))
    return out / "results.md"
