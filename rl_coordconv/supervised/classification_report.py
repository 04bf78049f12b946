"""Table, CSV and figure of the classification control."""

from __future__ import annotations

from pathlib import Path

from rl_coordconv.supervised.classification import ClassificationResult, markdown
from rl_coordconv.supervised.curves import save_measures_figure

COLUMNS = "experiment,arch,seed,parameters,epochs,seconds,train_accuracy,test_accuracy"
MEASURES_FIGURE = "measures.png"


def write_csv(results: list[ClassificationResult], path: Path) -> None:
    with path.open("w") as file:
        file.write(COLUMNS + "\n")
        for r in results:
            file.write(
                f"classification,{r.config.arch},{r.config.seed},{r.parameters},{r.config.epochs},{r.seconds:.1f},"
                f"{r.train_accuracy:.4f},{r.test_accuracy:.4f}\n"
            )


def save_measures(results: list[ClassificationResult], path: Path) -> Path:
    """``path``: test and train accuracy against epochs, a line per arch, mean over seeds with a band."""
    runs: dict[str, list] = {}
    for r in results:
        runs.setdefault(r.config.arch, []).append(r.history)
    measures = {"test/accuracy": "test accuracy", "train/accuracy": "train accuracy"}
    return save_measures_figure(runs, measures, path, "classification control")


def write_report(results: list[ClassificationResult], out_dir: Path, machine: str) -> str:
    """Write ``results.csv``, ``results.md`` and :data:`MEASURES_FIGURE` into ``out_dir``; return the report."""
    write_csv(results, out_dir / "results.csv")
    report = markdown(results, machine) + f"\nAccuracies against epochs: `{MEASURES_FIGURE}`.\n"
    (out_dir / "results.md").write_text(report)
    save_measures(results, out_dir / MEASURES_FIGURE)
    return report
