"""The stopping rule the supervised reports state: has a run's primary measure stopped moving?

A run met the plateau rule when its primary measure changed by less than ``tolerance`` (a
fraction) over the last ``share`` of its training (by default the last fifth): the range
(largest minus smallest) of the measures taken in epochs ``(1 - share) * budget`` to ``budget``,
divided by the magnitude of the last one. A run that stopped before its budget, or took fewer than
two measures in that window, cannot tell, and says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PLATEAU_SHARE = 0.2  # the last fifth of training
PLATEAU_TOLERANCE = 0.02  # a change under 2 % of the measure's last value


@dataclass(frozen=True)
class Plateau:
    """The rule's verdict on one run.

    :ivar met: True or False; None when the history cannot tell (``why`` says what is missing).
    :ivar change: the measure's range over the window relative to its last value (nan when it cannot tell).
    :ivar window: ``(first, last)`` epoch of the window, in epochs.
    """

    met: bool | None
    change: float
    window: tuple[float, float]
    why: str = ""

    def cell(self) -> str:
        """The verdict as a report's table cell: ``met (0.4 %)``, ``not met (7.1 %)`` or ``cannot tell: ...``."""
        if self.met is None:
            return f"cannot tell: {self.why}"
        return f"{'met' if self.met else 'not met'} ({100 * self.change:.1f} %)"


def check_rule(tolerance: float, share: float = PLATEAU_SHARE) -> None:
    """Raise ``ValueError`` naming a bad ``tolerance`` (must be > 0) or ``share`` (in (0, 1])."""
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"plateau tolerance must be a fraction > 0 (0.02 is 2 %), got {tolerance!r}")
    if not (isinstance(share, (int, float)) and 0 < share <= 1):
        raise ValueError(f"plateau share must be a fraction of training in (0, 1], got {share!r}")


def plateau(
    epochs: Sequence[float],
    values: Sequence[float],
    budget: float,
    tolerance: float = PLATEAU_TOLERANCE,
    share: float = PLATEAU_SHARE,
) -> Plateau:
    """Whether the measure ``values`` taken at ``epochs`` (same length, in epochs done) plateaued
    over the last ``share`` of a ``budget``-epoch training (see the module docstring)."""
    check_rule(tolerance, share)
    if len(epochs) != len(values):
        raise ValueError(f"epochs and values must pair up, got {len(epochs)} epochs and {len(values)} values")
    start = (1 - share) * budget
    window = (start, float(budget))
    reached = max(epochs, default=0.0)
    if reached < budget - 1e-9:
        return Plateau(None, math.nan, window, f"stopped at epoch {reached:g} of {budget:g}")
    inside = [value for epoch, value in zip(epochs, values) if epoch >= start - 1e-9]
    if len(inside) < 2:
        taken = f"{len(inside)} measure{'' if len(inside) == 1 else 's'}"
        return Plateau(None, math.nan, window, f"{taken} in epochs {start:g}-{budget:g}; measure more often")
    if not all(math.isfinite(value) for value in inside):
        return Plateau(None, math.nan, window, f"a measure in epochs {start:g}-{budget:g} is not a number")
    spread, last = max(inside) - min(inside), abs(inside[-1])
    change = spread / last if last > 0 else (0.0 if spread == 0 else math.inf)
    return Plateau(change < tolerance, change, window)


def same_budget(configs: Sequence) -> int:
    """The epoch budget (``config.epochs``) all ``configs`` share; ``ValueError`` when they differ: the
    two models of a comparison get the same budget, and the plateau rule is stated over it."""
    budgets = sorted({config.epochs for config in configs})
    if len(budgets) != 1:
        raise ValueError(f"the runs of one experiment must share one epoch budget, got {budgets}")
    return budgets[0]


def history_series(history: Sequence[dict[str, float]], tag: str) -> tuple[list[float], list[float]]:
    """``(epochs, values)`` of the records of a fit history (:class:`~.fitting.FitResult`) that hold ``tag``."""
    pairs = [(record["epoch"], record[tag]) for record in history if tag in record]
    return [epoch for epoch, _ in pairs], [value for _, value in pairs]


def plateau_section(
    verdicts: dict[tuple[str, int], Plateau], measure: str, budget: float, tolerance: float, share: float = PLATEAU_SHARE
) -> str:
    """The report's markdown: the rule as applied, a row per seed and a column per arch, then a
    line that counts the runs that met it. ``verdicts`` maps ``(arch, seed)`` to a verdict."""
    archs = list(dict.fromkeys(arch for arch, _ in verdicts))
    seeds = sorted({seed for _, seed in verdicts})
    start = (1 - share) * budget
    lines = [
        f"Plateau rule: a run met it when its {measure} changed by less than {100 * tolerance:g} % of its last "
        f"value (the range of the measures taken in epochs {start:g}-{budget:g}, the last "
        f"{100 * share:g} % of the {budget:g}-epoch budget both models got).",
        "",
        "| seed | " + " | ".join(archs) + " |",
        "|---|" + "---|" * len(archs),
    ]
    for seed in seeds:
        cells = [verdicts[arch, seed].cell() if (arch, seed) in verdicts else "not run" for arch in archs]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    met = sum(verdict.met is True for verdict in verdicts.values())
    missed = [
        f"{arch} seed {seed} ({'not met' if verdict.met is False else 'cannot tell'})"
        for (arch, seed), verdict in verdicts.items()
        if not verdict.met
    ]
    lines += ["", f"Met by {met} of {len(verdicts)} runs" + (f"; not by {', '.join(missed)}." if missed else ".")]
    return "\n".join(lines) + "\n"
