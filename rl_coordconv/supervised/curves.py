"""Measures against epochs: per model, the mean over seeds with its 95 % t-interval as a band, a
panel per measure, read from the runs' fit histories (:class:`~.fitting.FitResult`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from rl_coordconv.analysis.statistics import mean_interval

History = Sequence[dict[str, float]]  # one run's records: "epoch" and values by tag


def seed_curve(histories: Sequence[History], tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(epochs, mean, low, high)``, each ``(E,)``: at every epoch where some seed measured
    ``tag``, the mean over the seeds whose value there is a number and its t-interval (``low =
    high = mean`` from one seed; all nan where none is a number)."""
    by_epoch: dict[float, list[float]] = {}
    for history in histories:
        for record in history:
            if tag in record:
                by_epoch.setdefault(round(record["epoch"], 9), []).append(record[tag])
    epochs = np.array(sorted(by_epoch), dtype=np.float64)
    rows = []
    for epoch in epochs:
        finite = [value for value in by_epoch[epoch] if math.isfinite(value)]
        rows.append(mean_interval(np.array(finite)) if finite else (math.nan,) * 3)
    mean, low, high = (np.array(column, dtype=np.float64) for column in zip(*rows)) if rows else (np.zeros(0),) * 3
    return epochs, mean, low, high


def save_measures_figure(runs: dict[str, Sequence[History]], measures: dict[str, str], path: Path, title: str) -> Path:
    """Write ``path`` (a PNG): a panel per ``measures`` entry (tag -> panel title), a line per
    model of ``runs`` (label -> its seeds' histories), x the epochs. Measures no run took are left out."""
    shown = {
        tag: name for tag, name in measures.items() if any(tag in record for hs in runs.values() for h in hs for record in h)
    }
    if not shown:
        raise ValueError(f"no run measured any of {list(measures)}; nothing to plot")
    columns = min(3, len(shown))
    rows = -(-len(shown) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows + 0.6))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, (tag, name) in zip(axes, shown.items()):
        valued = False
        for label, histories in runs.items():
            epochs, mean, low, high = seed_curve(histories, tag)
            valued = valued or bool(np.isfinite(mean).any())
            (line,) = axis.plot(
                epochs, mean, marker=".", label=f"{label} ({len(histories)} seed{'s' if len(histories) > 1 else ''})"
            )
            if len(histories) > 1:
                axis.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if not valued:  # e.g. no object found to follow: the jump has no value
            axis.text(0.5, 0.5, "no value at any epoch", ha="center", va="center", transform=axis.transAxes, fontsize=8)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("epoch", fontsize=8)
        axis.tick_params(labelsize=7)
    for axis in axes[len(shown) :]:
        axis.set_visible(False)
    axes[0].legend(fontsize=7)
    figure.suptitle(f"{title}: mean over seeds, band: 95 % t-interval", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
