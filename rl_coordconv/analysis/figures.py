"""The report's figures: curves.png/.pdf (one panel per game and agent) and the same curves as
TensorBoard scalars with a custom-scalars layout."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from rl_coordconv.analysis.curves import SMOOTHING_FRACTION
from rl_coordconv.analysis.report import Report


def _steps_label(value: float, _position: object = None) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def plot_curves(report: Report) -> Figure:
    """One panel per game and agent: each arch's mean across seeds (line) and its 95 % CI (band,
    where at least two seeds have data), x in agent steps."""
    archs = sorted(
        {arch for panel in report.panels for arch in panel.curves}, key=lambda arch: (arch != report.baseline, arch)
    )
    colors = {arch: f"C{index}" for index, arch in enumerate(archs)}
    columns = min(3, len(report.panels))
    lines = math.ceil(len(report.panels) / columns)
    figure = Figure(figsize=(5.2 * columns, 3.8 * lines), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for axis, panel in zip(axes, report.panels):
        for arch, curve in panel.curves.items():
            shown = curve.seeds_per_step > 0
            seeds = len(curve.seeds)
            label = f"{arch} ({seeds} seed{'s' if seeds != 1 else ''}"
            full = np.flatnonzero(curve.seeds_per_step == seeds)
            if full.size and curve.seeds_per_step[-1] < seeds:  # seeds that stopped early
                label += f", {curve.seeds_per_step[-1]} after {_steps_label(panel.steps[full[-1]])} steps"
            axis.plot(panel.steps[shown], curve.mean[shown], color=colors[arch], label=label + ")")
            band = ~np.isnan(curve.low)
            if band.any():
                axis.fill_between(
                    panel.steps,
                    np.where(band, curve.low, curve.mean),
                    np.where(band, curve.high, curve.mean),
                    where=band,
                    color=colors[arch],
                    alpha=0.25,
                    linewidth=0,
                )
        axis.set_title(f"{panel.game} ({panel.agent})")
        axis.set_xlabel("agent steps (frames = 4 x steps)")
        axis.set_ylabel(report.metric)
        axis.xaxis.set_major_formatter(FuncFormatter(_steps_label))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    for axis in axes[len(report.panels) :]:
        axis.remove()
    # Two lines, so that a single 5.2-inch panel holds the title too.
    figure.suptitle(
        f"{report.metric}: mean across seeds, 95 % bootstrap CI\ntrailing window of "
        f"{round(100 * SMOOTHING_FRACTION)} % of the steps",
        fontsize=10,
    )
    return figure


def write_tensorboard(report: Report, folder: Path | str) -> Path:
    """The aggregated curves as TensorBoard runs ``folder/<game>/<agent>-<arch>``, scalars
    ``<game>/<agent>/mean``, ``lower``, ``upper`` (the 95 % CI; equal to the mean where one seed
    has data) and ``seeds`` at each grid step; each run carries the custom-scalars layout: one
    margin chart per game and agent, so every arch shows on one chart with its CI."""
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(folder)
    layout: dict[str, dict[str, list]] = {}
    for panel in report.panels:
        prefix = f"{panel.game}/{panel.agent}"
        category = f"{panel.agent}: {report.metric}, mean across seeds with 95 % CI"
        layout.setdefault(category, {})[panel.game] = ["Margin", [f"{prefix}/mean", f"{prefix}/lower", f"{prefix}/upper"]]
    for panel in report.panels:
        prefix = f"{panel.game}/{panel.agent}"
        for arch, curve in panel.curves.items():
            writer = SummaryWriter(log_dir=str(folder / _safe(panel.game) / f"{_safe(panel.agent)}-{_safe(arch)}"))
            writer.add_custom_scalars(layout)
            for index in np.flatnonzero(curve.seeds_per_step > 0):
                step, mean = int(panel.steps[index]), float(curve.mean[index])
                has_ci = not np.isnan(curve.low[index])
                writer.add_scalar(f"{prefix}/mean", mean, step)
                writer.add_scalar(f"{prefix}/lower", float(curve.low[index]) if has_ci else mean, step)
                writer.add_scalar(f"{prefix}/upper", float(curve.high[index]) if has_ci else mean, step)
                writer.add_scalar(f"{prefix}/seeds", int(curve.seeds_per_step[index]), step)
            writer.close()
    return folder


def _safe(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-_." else "_" for character in name)
