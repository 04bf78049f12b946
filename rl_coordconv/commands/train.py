"""Train one agent on one Atari game; one run directory per game/agent-arch/seed.

rl-coordconv train --game MsPacman --agent a2c --arch coordconv --seed 0 --timesteps 10M
rl-coordconv train --game MsPacman --agent apex --arch conv --set apex.buffer_size=500k
rl-coordconv train ... --set a2c.n_envs=8 --set checkpoint_every=100k
rl-coordconv train ... --resume        # continue from the last checkpoint
rl-coordconv train --agent apex --distributed [--actors K] [--ray-address auto|HOST:PORT]
"""

from __future__ import annotations

import argparse
import sys

from rl_coordconv.agents.config import apply_overrides, parse_steps, setting_names
from rl_coordconv.agents.distributed import DistributedTrainingStopped, check_address_form
from rl_coordconv.agents.experiment import run_experiment
from rl_coordconv.agents.registry import AGENTS
from rl_coordconv.agents.run_config import ExperimentConfig, check_overrides
from rl_coordconv.commands import HelpFormatter
from rl_coordconv.envs import BACKENDS, GAMES
from rl_coordconv.extractors import ARCHS
from rl_coordconv.interrupts import stops_on_signals
from rl_coordconv.rundir import run_directory

# The settings that have an option of their own here; a --set of one would overrule it unseen.
TRAIN_OPTIONS = {name: f"--{name}" for name in ("game", "agent", "arch", "seed", "timesteps", "device", "backend")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = ExperimentConfig()
    parser = argparse.ArgumentParser(prog="rl-coordconv train", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--game", default=defaults.game, choices=list(GAMES))
    parser.add_argument("--agent", default=defaults.agent, choices=AGENTS)
    parser.add_argument("--arch", default=defaults.arch, choices=sorted(ARCHS))
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--timesteps", default=str(defaults.timesteps), help="agent steps, e.g. 10M, 500k")
    parser.add_argument("--device", default=defaults.device, help="auto (CUDA when present), cpu, cuda, cuda:1")
    parser.add_argument("--backend", default=defaults.backend, choices=BACKENDS)
    parser.add_argument("--runs", default="runs", help="root folder of run directories")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a setting; settings: {', '.join(setting_names(defaults))}",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="apex: rollout actors and replay shards on Ray (pip install -e .[distributed])",
    )
    parser.add_argument("--actors", type=int, default=None, help="with --distributed: rollout actors (default: cores - 1)")
    parser.add_argument(
        "--ray-address",
        default=None,
        help="with --distributed: join this Ray cluster (auto, HOST:PORT); default: start a local Ray",
    )
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    config = ExperimentConfig(
        game=args.game,
        agent=args.agent,
        arch=args.arch,
        seed=args.seed,
        timesteps=parse_steps(args.timesteps),
        device=args.device,
        backend=args.backend,
    )
    check_overrides(args.overrides, [args.agent], TRAIN_OPTIONS)
    apply_overrides(config, args.overrides)
    if args.distributed:
        config.distributed.enabled = True
    if args.actors is not None:
        if not config.distributed.enabled:
            raise ValueError("--actors applies to --distributed training")
        config.distributed.actors = args.actors
    if args.ray_address is not None:
        if not config.distributed.enabled:
            raise ValueError("--ray-address applies to --distributed training")
        check_address_form(args.ray_address)
    config.validate()
    return config


@stops_on_signals
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
        print(
            f"Training {config.agent}-{config.arch} on {config.game}, seed {config.seed}, "
            f"{config.timesteps:,} steps -> {run_directory(args.runs, config)}"
        )
        run_dir = run_experiment(
            config, args.runs, resume=args.resume, progress_bar=not args.no_progress, ray_address=args.ray_address
        )
    except (ValueError, FileExistsError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except DistributedTrainingStopped as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"Done: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
