"""Tables and figures of the generative experiments: sample grids, interpolation strips and an
animated interpolation per model, the measures against epochs, and the plateau rule's verdicts."""

from __future__ import annotations

import csv
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from rl_coordconv.analysis.statistics import mean_interval
from rl_coordconv.supervised.curves import save_measures_figure
from rl_coordconv.supervised.generative import DEFAULT_LEARNING_RATES, GenerativeResult
from rl_coordconv.supervised.plateau import PLATEAU_TOLERANCE, history_series, plateau, plateau_section, same_budget

# The measures of the table, in its order, and what each says.
METRICS = {
    "samples_histogram_distance": "object-centre histogram distance to the data (0 best)",
    "samples_cells_reached": "position cells of the data reached by samples (1 best)",
    "objects_per_sample": "objects found per sample (data: 1.5)",
    "interpolation_mean_jump": "pixels an object moves per interpolation step",
    "interpolation_broken_steps": "interpolation steps where an object vanishes, appears or splits, or none is found (0 best)",
    "test_negative_elbo": "held-out negative ELBO per image (VAE; lower is better)",
    "test_pixel_mse": "held-out reconstruction squared error per pixel (VAE)",
    "test_object_miscount": "objects missed or added per held-out reconstruction (VAE)",
}
STRIP_ROWS = 6  # interpolations shown in a strip and in the animation
# Each experiment's primary measure, the one the plateau rule watches: (name in METRICS, in words).
PRIMARY = {
    "vae": ("test_negative_elbo", "held-out negative ELBO"),
    "gan": ("samples_histogram_distance", "object-centre histogram distance to the data"),
}
MEASURES_FIGURE = "measures.png"


def _row(result: GenerativeResult) -> dict[str, object]:
    config = result.config
    return {
        "experiment": config.experiment,
        "arch": config.arch,
        "seed": config.seed,
        "parameters": result.parameters,
        "epochs": config.epochs,
        "seconds": round(result.seconds, 1),
        **{name: round(result.metrics[name], 4) for name in METRICS if name in result.metrics},
    }


def write_csv(results: list[GenerativeResult], path: Path) -> None:
    rows = [_row(result) for result in results]
    columns = list(dict.fromkeys(column for row in rows for column in row))
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def markdown(results: list[GenerativeResult]) -> str:
    """One table per experiment: a row per measure, a column per arch, each cell the mean over the
    seeds with its 95 % t-interval where there are several."""
    lines = []
    for experiment in dict.fromkeys(result.config.experiment for result in results):
        mine = [result for result in results if result.config.experiment == experiment]
        archs = list(dict.fromkeys(result.config.arch for result in mine))
        by_arch = {arch: [result for result in mine if result.config.arch == arch] for arch in archs}
        seeds = sorted({result.config.seed for result in mine})
        what = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {seeds} with its 95 % t-interval"
        lines += [
            f"### {experiment.upper()} ({what})",
            "",
            "| measure | " + " | ".join(archs) + " |",
            "|---|" + "---:|" * len(archs),
        ]
        for name, meaning in METRICS.items():
            if all(name in result.metrics for result in mine):
                cells = [_cell([result.metrics[name] for result in by_arch[arch]]) for arch in archs]
                lines.append(f"| {meaning} | " + " | ".join(cells) + " |")
        lines.append(
            "| training seconds per run | "
            + " | ".join(f"{np.mean([result.seconds for result in by_arch[arch]]):.0f}" for arch in archs)
            + " |"
        )
        lines.append("")
    return "\n".join(lines)


def _cell(values: list[float]) -> str:
    """The mean and t-interval of the seeds that gave a value (a seed whose samples held no object
    has no jump), saying how many did when some did not."""
    finite = np.array([value for value in values if np.isfinite(value)])
    if not len(finite):
        return "none found"
    mean, low, high = mean_interval(finite)
    cell = f"{mean:.3f}" if len(finite) == 1 else f"{mean:.3f} [{low:.3f}, {high:.3f}]"
    return cell if len(finite) == len(values) else f"{cell} ({len(finite)} of {len(values)} seeds)"


def _tile(images: torch.Tensor, columns: int) -> np.ndarray:
    """``(N, 3, H, W)`` in [0, 1] -> one uint8 ``(rows * (H + 1), columns * (W + 1), 3)`` mosaic."""
    count, _, height, width = images.shape
    rows = -(-count // columns)
    mosaic = np.full((rows * (height + 1), columns * (width + 1), 3), 64, dtype=np.uint8)
    pixels = (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for k in range(count):
        row, column = divmod(k, columns)
        mosaic[row * (height + 1) : row * (height + 1) + height, column * (width + 1) : column * (width + 1) + width] = pixels[
            k
        ]
    return mosaic


def _upscale(mosaic: np.ndarray, factor: int = 3) -> np.ndarray:
    return mosaic.repeat(factor, axis=0).repeat(factor, axis=1)


def save_figures(results: list[GenerativeResult], out_dir: Path) -> list[Path]:
    """Per model: ``<experiment>-<arch>-samples.png`` (8 x 8 samples), ``-interpolation.png``
    (a row per interpolation, its frames left to right) and ``-interpolation.gif`` (the frames in
    time, the interpolations side by side)."""
    written, drawn = [], set()
    for result in results:
        model = (result.config.experiment, result.config.arch)
        if model in drawn:  # one set of figures per model: its first seed's
            continue
        drawn.add(model)
        stem = out_dir / f"{result.config.experiment}-{result.config.arch}"
        paths = [stem.with_name(stem.name + suffix) for suffix in ("-samples.png", "-interpolation.png", "-interpolation.gif")]
        imageio.imwrite(paths[0], _upscale(_tile(result.samples[:64], 8)))
        strips = result.interpolation[:STRIP_ROWS]
        imageio.imwrite(paths[1], _upscale(_tile(strips.flatten(0, 1), strips.shape[1])))
        frames = [_upscale(_tile(strips[:, step], len(strips))) for step in range(strips.shape[1])]
        imageio.mimsave(paths[2], frames + frames[::-1], duration=0.12, loop=0)
        written += paths
    return written


def save_measures(results: list[GenerativeResult], path: Path) -> Path:
    """``path``: every measure of :data:`METRICS` against epochs, a line per model (see
    :func:`~.curves.save_measures_figure`)."""
    runs: dict[str, list] = {}
    for result in results:
        runs.setdefault(f"{result.config.experiment} {result.config.arch}", []).append(result.history)
    experiments = "/".join(dict.fromkeys(result.config.experiment.upper() for result in results))
    return save_measures_figure(runs, {f"test/{name}": name for name in METRICS}, path, f"{experiments} measures")


def plateau_markdown(results: list[GenerativeResult], tolerance: float = PLATEAU_TOLERANCE) -> str:
    """The plateau rule's verdict for every run of one experiment on its primary measure."""
    experiment = results[0].config.experiment
    name, words = PRIMARY[experiment]
    budget = same_budget([r.config for r in results])
    verdicts = {
        (result.config.arch, result.config.seed): plateau(*history_series(result.history, f"test/{name}"), budget, tolerance)
        for result in results
    }
    return plateau_section(verdicts, words, budget, tolerance)


def settings_line(result: GenerativeResult) -> str:
    """The run's training settings, as both models of an experiment got them."""
    config = result.config
    learning_rate = config.learning_rate or DEFAULT_LEARNING_RATES[config.experiment]
    line = (
        f"Settings: {config.epochs} epochs of {config.train_scenes:,} scenes, batch {config.batch_size}, Adam learning rate "
        f"{learning_rate} decayed to 0 along a half cosine, "
        f"measured every {config.measure_every} epochs (and after the last) on {config.samples:,} samples from fixed "
        f"codes, {config.interpolations} fixed interpolations of {config.steps} frames"
    )
    if config.experiment == "gan":
        line += (
            f"; the discriminator: learning rate {config.discriminator_learning_rate or learning_rate}, width "
            f"{config.discriminator_width or config.width} (the generator's {config.width}), {config.discriminator_steps} "
            f"update(s) per generator update, spectral norm {'on' if config.spectral_norm else 'off'}, R1 penalty "
            f"{config.r1_penalty:g}"
        )
        if config.generator_average > 0:
            line += (
                f"; the measures and samples from an exponential moving average of the generator's weights and "
                f"batch-norm statistics (decay {config.generator_average:g})"
            )
    return line + "."


def write_report(results: list[GenerativeResult], out_dir: Path, machine: str, tolerance: float = PLATEAU_TOLERANCE) -> str:
    """Write ``results.csv``, ``results.md``, the figures and :data:`MEASURES_FIGURE` of one
    experiment's runs into ``out_dir``; return the report."""
    write_csv(results, out_dir / "results.csv")
    report = "\n".join(
        [
            f"## {results[0].config.experiment.upper()} on Sort-of-CLEVR scenes ({machine})\n",
            settings_line(results[0]) + "\n",
            markdown(results),
            plateau_markdown(results, tolerance),
            f"Measures against epochs: `{MEASURES_FIGURE}`.\n",
        ]
    )
    (out_dir / "results.md").write_text(report)
    save_figures(results, out_dir)
    save_measures(results, out_dir / MEASURES_FIGURE)
    return report
