"""Table, figures and plateau verdicts of the detection experiment."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from rl_coordconv.analysis.statistics import mean_interval
from rl_coordconv.supervised.archs import ARCHS
from rl_coordconv.supervised.curves import save_measures_figure
from rl_coordconv.supervised.detection import MONITORED, SCORE_THRESHOLD, DetectionResult
from rl_coordconv.supervised.plateau import PLATEAU_TOLERANCE, history_series, plateau, plateau_section, same_budget

METRICS = {
    "mean_iou": "mean IoU of each true box with its best prediction",
    "map_50": "mAP at IoU 0.5",
    "recall_50": "recall at IoU 0.5 (right digit)",
}
PAPER_RELATIVE_IOU = 0.24  # the paper: CoordConv raises the mean IoU by about 24 %
PRIMARY = "test/mean_iou"  # the plateau rule's measure: the per-epoch curve's
MEASURES_FIGURE = "measures.png"
EXAMPLES_FIGURE = "detection-examples.png"


def write_csv(results: list[DetectionResult], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["experiment", "arch", "seed", "parameters", "epochs", "seconds", *METRICS])
        for r in results:
            writer.writerow(
                [
                    "detection",
                    r.config.arch,
                    r.config.seed,
                    r.parameters,
                    r.config.epochs,
                    f"{r.seconds:.1f}",
                    *(f"{r.metrics[name]:.4f}" for name in METRICS),
                ]
            )


def _cell(values: list[float], signed: bool = False, digits: int = 3) -> str:
    mean, low, high = mean_interval(np.array(values))
    form = f"{{:{'+' if signed else ''}.{digits}f}}"
    return form.format(mean) if len(values) == 1 else f"{form.format(mean)} [{form.format(low)}, {form.format(high)}]"


def paired(results: list[DetectionResult], name: str) -> tuple[list[float], list[float]]:
    """``(coordconv - conv, (coordconv - conv) / conv)`` of one measure, per seed that both archs ran."""
    by_arch = {arch: {r.config.seed: r.metrics[name] for r in results if r.config.arch == arch} for arch in ARCHS}
    seeds = sorted(set(by_arch["conv"]) & set(by_arch["coordconv"]))
    differences = [by_arch["coordconv"][s] - by_arch["conv"][s] for s in seeds]
    relative = [d / by_arch["conv"][s] if by_arch["conv"][s] > 0 else float("nan") for d, s in zip(differences, seeds)]
    return differences, relative


def markdown(results: list[DetectionResult], machine: str) -> str:
    """The measures per arch (mean over seeds with a 95 % t-interval) and CoordConv minus conv,
    paired by seed, beside the paper's relative IoU gain."""
    seeds = sorted({r.config.seed for r in results})
    what = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {seeds} with its 95 % t-interval"
    archs = [arch for arch in ARCHS if any(r.config.arch == arch for r in results)]
    both = len(archs) == 2
    lines = [
        f"## Detection: Faster R-CNN on scattered digits ({machine})",
        "",
        f"Test canvases, {what}; mean IoU and recall count detections scoring at least {SCORE_THRESHOLD}.",
        "",
        "| measure | " + " | ".join(archs) + (" | CoordConv - conv |" if both else " |"),
        "|---|" + "---:|" * (len(archs) + both),
    ]
    for name, meaning in METRICS.items():
        cells = [_cell([r.metrics[name] for r in results if r.config.arch == arch]) for arch in archs]
        if both:
            cells.append(_cell(paired(results, name)[0], signed=True))
        lines.append(f"| {meaning} | " + " | ".join(cells) + " |")
    lines.append(
        "| parameters | "
        + " | ".join(f"{next(r.parameters for r in results if r.config.arch == arch):,}" for arch in archs)
        + (" | |" if both else " |")
    )
    lines.append(
        "| training seconds per run | "
        + " | ".join(f"{np.mean([r.seconds for r in results if r.config.arch == arch]):.0f}" for arch in archs)
        + (" | |" if both else " |")
    )
    if both:
        relative = [100 * value for value in paired(results, "mean_iou")[1] if np.isfinite(value)]
        change = f"{_cell(relative, signed=True, digits=1)} %" if relative else "undefined (the conv detector's mean IoU is 0)"
        lines += [
            "",
            f"Relative change of the mean IoU, CoordConv over conv, paired by seed: {change} "
            f"(the paper: about +{100 * PAPER_RELATIVE_IOU:.0f} %).",
        ]
    return "\n".join(lines) + "\n"


def save_figure(results: list[DetectionResult], path: Path, score_threshold: float = SCORE_THRESHOLD) -> Path:
    """Test canvases of the first seed, a row per arch: true boxes green, detections scoring at
    least ``score_threshold`` red with their digit."""
    firsts = {}
    for r in results:
        firsts.setdefault(r.config.arch, r)
    columns = min(len(r.examples) for r in firsts.values())
    figure = Figure(figsize=(1.6 * columns, 1.8 * len(firsts)))
    axes = figure.subplots(len(firsts), columns, squeeze=False)
    for row, (arch, result) in enumerate(firsts.items()):
        for column in range(columns):
            axis = axes[row, column]
            axis.imshow(result.examples[column, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            for x1, y1, x2, y2 in result.example_targets[column]["boxes"].tolist():
                axis.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="lime", lw=1))
            prediction = result.example_predictions[column]
            for box, label, score in zip(
                prediction["boxes"].tolist(), prediction["labels"].tolist(), prediction["scores"].tolist()
            ):
                if score >= score_threshold:
                    x1, y1, x2, y2 = box
                    axis.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="red", lw=1))
                    axis.text(x1, y1 - 1, str(label - 1), color="red", fontsize=6)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(arch)
    figure.suptitle("test canvases: true boxes (green), detections (red)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def plateau_markdown(results: list[DetectionResult], tolerance: float = PLATEAU_TOLERANCE) -> str:
    """The plateau rule's verdict for every run on the test mean IoU of its per-epoch curve."""
    budget = same_budget([r.config for r in results])
    verdicts = {
        (r.config.arch, r.config.seed): plateau(*history_series(r.history, PRIMARY), budget, tolerance) for r in results
    }
    return plateau_section(
        verdicts, f"test mean IoU (on the first {MONITORED} test canvases, after each epoch)", budget, tolerance
    )


def save_measures(results: list[DetectionResult], path: Path) -> Path:
    """``path``: the per-epoch test measures against epochs, a line per arch, mean over seeds with a band."""
    runs: dict[str, list] = {}
    for r in results:
        runs.setdefault(r.config.arch, []).append(r.history)
    measures = {f"test/{name}": f"{name} (first {MONITORED} test canvases)" for name in METRICS}
    return save_measures_figure(runs, measures, path, "detection")


def write_report(results: list[DetectionResult], out_dir: Path, machine: str, tolerance: float = PLATEAU_TOLERANCE) -> str:
    """Write ``results.csv``, ``results.md`` and the two figures into ``out_dir``; return the report."""
    write_csv(results, out_dir / "results.csv")
    report = "\n".join(
        [markdown(results, machine), plateau_markdown(results, tolerance), f"Measures against epochs: `{MEASURES_FIGURE}`.\n"]
    )
    (out_dir / "results.md").write_text(report)
    save_figure(results, out_dir / EXAMPLES_FIGURE)
    save_measures(results, out_dir / MEASURES_FIGURE)
    return report
