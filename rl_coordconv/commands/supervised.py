"""Reproduce the CoordConv paper's supervised experiments on this machine.

    rl-coordconv supervised                       # Not-so-Clevr: all tasks, both splits, both models (~30 min)
    rl-coordconv supervised --model coordconv     # CoordConv only (~3 min)
    rl-coordconv supervised --model conv          # the paper's deconv and conv models only
    rl-coordconv supervised --task rendering --split quadrant --epochs 3 --no-early-stop
    rl-coordconv supervised --experiment vae      # a VAE on Sort-of-CLEVR scenes, conv vs CoordConv, 3 seeds
    rl-coordconv supervised --experiment gan      # a GAN on the same scenes, 3 seeds
    rl-coordconv supervised --experiment gan --epochs 200 --discriminator-learning-rate 4e-4 --learning-rate 1e-4
    rl-coordconv supervised --experiment classification   # the "what" control: digits, 5 seeds
    rl-coordconv supervised --experiment detection        # Faster R-CNN on scattered digits, 5 seeds
                                                          # (needs torchvision: make detection-venv)
    rl-coordconv supervised --experiment vae --seeds 1    # one seed per model (no intervals)
    rl-coordconv supervised --experiment all --quick   # everything, tiny budgets (a smoke test)
    rl-coordconv supervised --experiment vae --epochs 200 --out runs/vae --resume   # continue an interrupted command

Writes ``<out>/results.md``, ``results.csv``, the figures (``measures.png``: the measures against
epochs, but for Not-so-Clevr), and TensorBoard logs under ``<out>/tb/``; the VAE's, the GAN's
and detection's reports say for each run whether it met the plateau rule
(:mod:`rl_coordconv.supervised.plateau`); with ``--experiment all`` each experiment in ``<out>/<experiment>/`` and the
reports joined in ``<out>/results.md`` (detection only where torchvision loads; it says so when not). ``<out>`` defaults to a new ``runs/supervised/<date-time>``.
Each run's result is kept in ``finished/<run>.pt`` beside them as it finishes, so that an
interrupted command continues with ``--resume``: a run trains from its start or not at all.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from rl_coordconv.commands import HelpFormatter
from rl_coordconv.supervised import MODELS, SPLITS, TASKS, experiments
from rl_coordconv.supervised.experiments import EXPERIMENT_NAMES, EXPERIMENTS, NOT_SO_CLEVR_OPTIONS
from rl_coordconv.supervised.plateau import PLATEAU_TOLERANCE

RENAMED_MODELS = {"baseline": "conv"}  # --model values renamed, old -> new: the old still work, with a warning


def model_name(name: str) -> str:
    """``--model``'s value under its current name, with a ``FutureWarning`` for a renamed one."""
    if name in RENAMED_MODELS:
        warnings.warn(
            f"--model {name} is now --model {RENAMED_MODELS[name]}; the old name will go in a later version",
            FutureWarning,
            stacklevel=2,
        )
    return RENAMED_MODELS.get(name, name)


def _per_experiment(attribute: str) -> str:
    return ", ".join(f"{getattr(experiment, attribute)} for {name}" for name, experiment in EXPERIMENTS.items())


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rl-coordconv supervised", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--experiment", default=EXPERIMENT_NAMES[0], choices=[*EXPERIMENT_NAMES, "all"])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that everything runs and writes its files")
    parser.add_argument("--task", default=NOT_SO_CLEVR_OPTIONS["task"], choices=[*TASKS, "all"], help="Not-so-Clevr task")
    parser.add_argument("--split", default=NOT_SO_CLEVR_OPTIONS["split"], choices=[*SPLITS, "both"])
    parser.add_argument(
        "--model", default=NOT_SO_CLEVR_OPTIONS["model"], type=model_name, choices=[*MODELS, "both"], help="Not-so-Clevr model"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epoch budget per run, the same for both models (default: per experiment and model)",
    )
    parser.add_argument("--learning-rate", type=float, default=None, help="(default: per experiment; the GAN's generator's)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="(default: 16 for not-so-clevr and detection, 64 for the others)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument(
        "--seeds", type=int, default=None, help=f"seeds per model, from --seed on (default: {_per_experiment('seeds')})"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help=f"runs at once, each in its own process with cpu_count / jobs threads (default: {_per_experiment('jobs')})",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1")
    parser.add_argument(
        "--checks-per-epoch",
        type=int,
        default=NOT_SO_CLEVR_OPTIONS["checks_per_epoch"],
        help="test evaluations per epoch (timing resolution)",
    )
    parser.add_argument("--no-early-stop", action="store_true", help="train the whole budget even when solved")
    parser.add_argument(
        "--measure-every",
        type=int,
        default=None,
        help="VAE and GAN: epochs between measures, and after the last (default: a tenth of the budget, at least 1)",
    )
    parser.add_argument(
        "--plateau-tolerance",
        type=float,
        default=None,
        help=f"the plateau rule: a run met it when its primary measure changed by less than this fraction of its last "
        f"value over the last fifth of training (default: {PLATEAU_TOLERANCE})",
    )
    gan = parser.add_argument_group("the GAN's stabilisers (both models alike)")
    gan.add_argument(
        "--discriminator-learning-rate", type=float, default=None, help="(default: the generator's, --learning-rate)"
    )
    gan.add_argument(
        "--discriminator-width",
        type=int,
        default=None,
        help="channels of its first convolution (default: the generator's)",
    )
    gan.add_argument(
        "--discriminator-steps", type=int, default=None, help="discriminator updates per generator update (default: 1)"
    )
    gan.add_argument(
        "--spectral-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="spectral normalization of the discriminator's weights (default: on)",
    )
    gan.add_argument(
        "--r1-penalty", type=float, default=None, help="gamma of the R1 gradient penalty on real images (default: 0, none)"
    )
    gan.add_argument(
        "--generator-average",
        type=float,
        default=None,
        metavar="DECAY",
        help="measure and sample an exponential moving average of the generator, e.g. 0.999 (default: 0, none)",
    )
    parser.add_argument("--out", default=None, help="output folder (default: runs/supervised/<date-time>)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the command that wrote --out (give its options again): its finished runs are read, the rest trained",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        written = experiments.run(args)
    except experiments.RefusedOptions as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted; the finished runs are kept: continue with the same command and --resume", file=sys.stderr)
        return 130
    print(f"\n{written.read_text()}\nWritten: {written}; TensorBoard: tensorboard --logdir {written.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
