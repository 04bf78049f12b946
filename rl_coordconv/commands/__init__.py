"""The ``rl-coordconv`` command: one subcommand per job, each a module of this package.

    rl-coordconv train --game MsPacman --arch coordconv --timesteps 10M
    rl-coordconv sweep --games paper9 --seeds 0-4 --timesteps 10M
    rl-coordconv compare runs/ --out report/
    rl-coordconv <command> --help

``python -m rl_coordconv <command>`` and ``python scripts/<command>.py`` are the same commands.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import sys
import warnings

COMMANDS = {
    "train": "train one agent on one game: one run directory",
    "sweep": "run a grid of games x agents x archs x seeds, resumable, locally or on Ray",
    "compare": "compare archs across seeds: curves, table with verdicts, aggregates, TensorBoard",
    "evaluate": "score a run's checkpoint over full games; videos and saliency",
    "records": "copy finished runs' records (config, events, evaluations; no checkpoints) elsewhere",
    "supervised": "the CoordConv paper's supervised Not-so-Clevr experiments",
    "demo": "A2C with conv and with CoordConv on Ms. Pac-Man, then their comparison report",
}


def _shows_default(action: argparse.Action) -> bool:
    # Identity, not ``in``: a default of 0 equals False and would be passed over.
    return not any(action.default is hidden for hidden in (None, False, argparse.SUPPRESS))


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help``: the command's docstring as written, and every option with its default once:
    also the options without a help text (which argparse's defaults formatter passes over), but
    not a flag's ``False``, the ``None`` of a default resolved later, or a default the help states."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and action.option_strings and _shows_default(action):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        if not _shows_default(action) or "default" in action.help:
            return action.help
        return super()._get_help_string(action)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()]
    return (
        "usage: rl-coordconv <command> [options]\n\ncommands:\n"
        + "\n".join(lines)
        + "\n\nrl-coordconv <command> --help lists a command's options with their defaults."
    )


def one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """A warning as the commands print it: ``warning: <message>``, without the file, line number and
    source line of the call, which tell a user of the command nothing."""
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}\n\n{usage()}", file=sys.stderr)
        return 2
    previous, warnings.formatwarning = warnings.formatwarning, one_line_warning
    try:
        return importlib.import_module(f"{__name__}.{name}").main(rest)
    finally:
        warnings.formatwarning = previous
