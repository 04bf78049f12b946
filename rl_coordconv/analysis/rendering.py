"""Writing a :class:`~rl_coordconv.analysis.report.Report` to a folder: summary.csv, summary.md
(:mod:`~rl_coordconv.analysis.markdown`), curves.csv, curves.png/.pdf and tensorboard/
(:mod:`~rl_coordconv.analysis.figures`)."""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rl_coordconv.analysis.estimates import COLUMNS
from rl_coordconv.analysis.figures import plot_curves, write_tensorboard
from rl_coordconv.analysis.markdown import summary_markdown
from rl_coordconv.analysis.report import Report

FRAMES_PER_STEP = 4
OUTPUTS = ("summary.csv", "summary.md", "curves.csv", "curves.png", "curves.pdf", "tensorboard")


@dataclass(frozen=True)
class ReportFiles:
    summary_csv: Path
    summary_md: Path
    curves_csv: Path
    curves_png: Path
    curves_pdf: Path
    tensorboard: Path


def write_summary_csv(report: Report, path: Path | str) -> Path:
    """summary.csv: one row per game, agent and arch, the columns of ``COLUMNS``; empty cell = no value."""
    path = Path(path)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in report.rows:
            writer.writerow(row.record())
    return path


def write_curves_csv(report: Report, path: Path | str) -> Path:
    """The plotted curves: one line per game, agent, arch and grid step with data."""
    path = Path(path)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["game", "agent", "arch", "step", "frames", "seeds", "mean", "low", "high"])
        for panel in report.panels:
            for curve in panel.curves.values():
                for index in np.flatnonzero(curve.seeds_per_step > 0):
                    step = int(panel.steps[index])
                    low, high = curve.low[index], curve.high[index]
                    writer.writerow(
                        [
                            panel.game,
                            panel.agent,
                            curve.arch,
                            step,
                            FRAMES_PER_STEP * step,
                            int(curve.seeds_per_step[index]),
                            float(curve.mean[index]),
                            "" if np.isnan(low) else float(low),
                            "" if np.isnan(high) else float(high),
                        ]
                    )
    return path


def check_output_folder(folder: Path | str, *, overwrite: bool = False) -> Path:
    """Refuse a ``folder`` that is a file, or that holds files unless ``overwrite``.

    :raises FileExistsError: with what to do instead.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"--out {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(
            f"--out {folder} is not empty; choose an empty or new folder, or pass --overwrite to replace the report there"
        )
    return folder


def prepare_output_folder(folder: Path | str, *, overwrite: bool = False) -> Path:
    """:func:`check_output_folder`, then remove the report's own outputs from ``folder`` (other
    files stay), so TensorBoard does not mix old and new curves, and create it."""
    folder = check_output_folder(folder, overwrite=overwrite)
    for name in OUTPUTS:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_report(report: Report, folder: Path | str, *, overwrite: bool = False) -> ReportFiles:
    """Write summary.csv, summary.md, curves.csv, curves.png, curves.pdf and tensorboard/ to ``folder``
    (refused when it is not empty, unless ``overwrite``)."""
    folder = prepare_output_folder(folder, overwrite=overwrite)
    figure = plot_curves(report)
    files = ReportFiles(
        folder / "summary.csv",
        folder / "summary.md",
        folder / "curves.csv",
        folder / "curves.png",
        folder / "curves.pdf",
        folder / "tensorboard",
    )
    figure.savefig(files.curves_png, dpi=120)
    figure.savefig(files.curves_pdf)
    write_summary_csv(report, files.summary_csv)
    write_curves_csv(report, files.curves_csv)
    files.summary_md.write_text(summary_markdown(report))
    write_tensorboard(report, files.tensorboard)
    return files
