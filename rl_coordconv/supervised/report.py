"""Results tables (CSV, Markdown) and paper-style figures for Not-so-Clevr runs."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from rl_coordconv.supervised.archs import ARCHS
from rl_coordconv.supervised.data import CANVAS, NotSoClevr
from rl_coordconv.supervised.train import TASKS, TrainResult

COLUMNS = [
    "task",
    "split",
    "model",
    "parameters",
    "metric",
    "train",
    "test",
    "epochs_run",
    "seconds",
    "epochs_to_threshold",
    "seconds_to_threshold",
    "epoch_budget",
    "learning_rate",
    "batch_size",
    "extra_test_metrics",
]


def result_row(result: TrainResult) -> dict[str, object]:
    config, task = result.config, TASKS[result.config.task]
    extra = {k: round(v, 4) for k, v in result.test.items() if k != task.metric}
    return {
        "task": config.task,
        "split": config.split,
        "model": config.model,
        "parameters": result.parameters,
        "metric": task.metric,
        "train": round(result.train[task.metric], 4),
        "test": round(result.test[task.metric], 4),
        "epochs_run": round(result.epochs_run, 2),
        "seconds": round(result.seconds, 1),
        "epochs_to_threshold": None if result.epochs_to_threshold is None else round(result.epochs_to_threshold, 2),
        "seconds_to_threshold": None if result.seconds_to_threshold is None else round(result.seconds_to_threshold, 1),
        "epoch_budget": config.epochs,
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "extra_test_metrics": "; ".join(f"{k}={v}" for k, v in extra.items()),
    }


def by_task_and_split(results: list[TrainResult]) -> dict[tuple[str, str], dict[str, TrainResult]]:
    """``{(task, split): {model: result}}``, in the order the results came."""
    grouped: dict[tuple[str, str], dict[str, TrainResult]] = {}
    for result in results:
        grouped.setdefault((result.config.task, result.config.split), {})[result.config.model] = result
    return grouped


def write_csv(results: list[TrainResult], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for result in results:
            writer.writerow(result_row(result))


def markdown(results: list[TrainResult], machine: str) -> str:
    """A results table, then per task and split the CoordConv vs conv ratios."""
    thresholds = ", ".join(f"{task.name} {task.metric} >= {task.threshold}" for task in TASKS.values())
    lines = [
        f"# Not-so-Clevr results\n\nMachine: {machine}. Solved: test {thresholds}; training stops there unless --no-early-stop.\n",
        "| task | split | model | params | metric | train | test | budget | epochs run | seconds | solved after |",
        "|---|---|---|---:|---|---:|---:|---|---:|---:|---|",
    ]
    for result in results:
        row = result_row(result)
        solved = (
            "not solved"
            if row["epochs_to_threshold"] is None
            else f"{row['epochs_to_threshold']} epochs, {row['seconds_to_threshold']} s"
        )
        lines.append(
            f"| {row['task']} | {row['split']} | {row['model']} | {row['parameters']:,} | {row['metric']} | "
            f"{row['train']:.4f} | {row['test']:.4f} | {row['epoch_budget']} epochs, Adam lr {row['learning_rate']}, "
            f"batch {row['batch_size']}, cosine | {row['epochs_run']} | {row['seconds']} | {solved} |"
        )
    comparison = []
    for (task, split), models in by_task_and_split(results).items():
        if set(models) != {"coordconv", "conv"}:
            continue
        coordconv, conv = models["coordconv"], models["conv"]
        parameter_ratio = conv.parameters / coordconv.parameters
        if coordconv.seconds_to_threshold is None:
            speed = "CoordConv did not solve it"
        elif conv.seconds_to_threshold is None:
            speed = f"> {conv.seconds / coordconv.seconds_to_threshold:.0f}x (conv unsolved after {conv.seconds:.0f} s)"
        else:
            speed = f"{conv.seconds_to_threshold / coordconv.seconds_to_threshold:.1f}x"
        comparison.append(f"| {task} | {split} | {parameter_ratio:.1f}x | {speed} |")
    if comparison:
        lines += [
            "",
            "| task | split | conv / CoordConv parameters | time to solve, conv / CoordConv |",
            "|---|---|---:|---|",
            *comparison,
        ]
    return "\n".join(lines) + "\n"


def _heatmaps(task_name: str, outputs) -> torch.Tensor:
    """``(B, 64, 64)`` pictures of a model's outputs: the classifier's softmax over pixels, the
    renderer's per-pixel probabilities."""
    if task_name == "classification":
        return outputs.softmax(dim=1).view(-1, CANVAS, CANVAS)
    return outputs.image_logits.sigmoid().view(-1, CANVAS, CANVAS)


@torch.no_grad()
def save_figures(results: list[TrainResult], out_dir: Path, examples: int = 4) -> list[Path]:
    """One figure per task and split, conv above CoordConv, as in the paper: predicted heatmaps
    (classification) or painted squares (rendering) on the same test examples with the true centre
    marked; for regression, every test centre and its prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for (task_name, split), models in by_task_and_split(results).items():
        task = TASKS[task_name]
        names = [name for name in ARCHS if name in models]
        device = next(models[names[0]].model.parameters()).device
        test_points = NotSoClevr.build(split, models[names[0]].config.seed, device).test_points
        if task_name == "regression":
            figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.4), squeeze=False)
            for axis, name in zip(axes[0], names):
                predicted = models[name].model.eval()(task.inputs(test_points)).cpu().numpy() * (CANVAS - 1)
                truth = test_points.cpu().numpy()
                axis.plot(truth[:, 1], truth[:, 0], "k.", markersize=2, label="true centre")
                axis.plot(predicted[:, 1], predicted[:, 0], "rx", markersize=3, alpha=0.6, label="prediction")
                axis.set_xlim(0, CANVAS - 1), axis.set_ylim(CANVAS - 1, 0), axis.set_aspect("equal")
                axis.set_title(f"{name}: pixel accuracy {models[name].test['pixel_accuracy']:.3f}", fontsize=9)
            axes[0][0].legend(loc="lower left", fontsize=7)
            figure.suptitle(f"regression, {split} split: test centres (row, column) and predictions")
        else:
            chosen = test_points[torch.linspace(0, len(test_points) - 1, examples).long()]
            figure, axes = plt.subplots(len(names), examples, figsize=(2.4 * examples, 2.9 * len(names)), squeeze=False)
            for row, name in enumerate(names):
                heatmaps = _heatmaps(task_name, models[name].model.eval()(task.inputs(chosen)))
                for column, (heatmap, point) in enumerate(zip(heatmaps.cpu().numpy(), chosen.cpu().numpy())):
                    axis = axes[row][column]
                    axis.imshow(heatmap, cmap="viridis", vmin=0)
                    axis.plot(point[1], point[0], "r+", markersize=10)
                    axis.set_xticks([]), axis.set_yticks([])
                    axis.set_title(f"{name} ({int(point[0])}, {int(point[1])})", fontsize=8)
            shown = "predicted heatmaps" if task_name == "classification" else "painted probabilities"
            figure.suptitle(f"{task_name}, {split} split: {shown} on test examples (red + = true centre)")
        figure.tight_layout()
        path = out_dir / f"{task_name}_{split}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    return paths


def write_report(results: list[TrainResult], out_dir: Path, machine: str) -> str:
    """Write ``results.csv``, ``results.md`` and the figures into ``out_dir``; return the report."""
    write_csv(results, out_dir / "results.csv")
    report = markdown(results, machine)
    (out_dir / "results.md").write_text(report)
    save_figures(results, out_dir)
    return report
