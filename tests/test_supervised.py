import csv
import dataclasses
import importlib
import math
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from rl_coordconv.layers import CoordConv2d
from rl_coordconv.supervised import TrainConfig, train
from rl_coordconv.supervised.archs import ARCHS, conv_layer
from rl_coordconv.supervised.classification import ClassificationConfig
from rl_coordconv.supervised.data import (
    centres,
    normalized_coordinates,
    one_hot_images,
    split_indices,
    square_images,
    unit_coordinates,
)
from rl_coordconv.supervised.metrics import accuracy, iou, pixel_accuracy, squared_error_pixels
from rl_coordconv.supervised.models import Rendering, build_model, count_parameters
from rl_coordconv.supervised.report import markdown, save_figures
from rl_coordconv.supervised.train import TASKS, TrainResult

train_module = importlib.import_module("rl_coordconv.supervised.train")  # the package's `train` is the function


def test_dataset_has_every_centre_once():
    points = centres()
    assert points.shape == (3136, 2)
    assert points.min() == 4 and points.max() == 59
    assert len({tuple(p) for p in points}) == 3136
    images, squares = one_hot_images(torch.as_tensor(points)), square_images(torch.as_tensor(points))
    assert images.shape == squares.shape == (3136, 1, 64, 64)
    assert torch.equal(images.sum(dim=(1, 2, 3)), torch.ones(3136))
    assert torch.equal(squares.sum(dim=(1, 2, 3)), torch.full((3136,), 81.0))


def test_images_are_drawn_at_the_centre():
    points = torch.tensor([[4, 59], [30, 7]])
    images, squares = one_hot_images(points), square_images(points)
    assert images[0, 0, 4, 59] == 1 and images[1, 0, 30, 7] == 1
    rows, columns = torch.nonzero(squares[1, 0], as_tuple=True)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (26, 34, 3, 11)
    rows, columns = torch.nonzero(squares[0, 0], as_tuple=True)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (0, 8, 55, 63)  # touches two edges


def test_quadrant_split_holds_out_the_bottom_right_quadrant():
    train_index, test_index = split_indices("quadrant")
    points = centres()
    assert len(test_index) == 729 and len(train_index) == 2407
    assert np.all(points[test_index] > 32)
    assert not np.any(np.all(points[train_index] > 32, axis=1))


def test_uniform_split_is_a_seeded_80_20_partition():
    train_index, test_index = split_indices("uniform", seed=3)
    assert len(test_index) == 627 and len(train_index) == 2509
    assert set(train_index).isdisjoint(test_index) and len(set(train_index) | set(test_index)) == 3136
    again, _ = split_indices("uniform", seed=3)
    other, _ = split_indices("uniform", seed=4)
    assert np.array_equal(train_index, again) and not np.array_equal(train_index, other)
    with pytest.raises(ValueError, match="unknown split 'diagonal'"):
        split_indices("diagonal")


def test_accuracy_of_known_predictions():
    logits = torch.tensor([[0.1, 2.0, 0.3], [5.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 3.0, 2.0]])
    assert accuracy(logits, torch.tensor([1, 0, 0, 2])) == 0.5


def test_iou_of_known_masks():
    truth = torch.zeros(2, 16)
    truth[0, :4] = 1  # 4 true pixels
    truth[1, :2] = 1
    logits = torch.full((2, 16), -1.0)
    logits[0, 2:6] = 1.0  # paints 2 of the 4 true pixels and 2 others: 2 / 6
    logits[1, :2] = 0.5  # exactly right: 1
    assert iou(logits, truth) == pytest.approx((2 / 6 + 1) / 2)
    assert iou(torch.zeros(1, 16), truth[:1]) == 0.0  # logit 0 is sigmoid 0.5: not painted


def test_regression_metrics_of_known_predictions():
    points = torch.tensor([[10, 20], [40, 50]])
    exact = unit_coordinates(points)
    assert torch.allclose(exact * 63, points.float())
    assert pixel_accuracy(exact, points) == 1.0 and squared_error_pixels(exact, points) == pytest.approx(0.0, abs=1e-9)
    off = exact + torch.tensor([[0.4, -0.4], [0.6, 0.0]]) / 63  # rounds right, then one pixel off in rows
    assert pixel_accuracy(off, points) == 0.5
    assert squared_error_pixels(off, points) == pytest.approx((0.16 + 0.16 + 0.36 + 0.0) / 4, rel=1e-4)


@pytest.mark.parametrize(
    "task, model, parameters",
    [
        ("classification", "coordconv", 7553),
        ("classification", "conv", 103_585),
        ("rendering", "coordconv", 11_850),
        ("rendering", "conv", 103_585),
        ("regression", "coordconv", 906),
        ("regression", "conv", 72_850),
    ],
)
def test_models_match_the_official_parameter_counts_and_shapes(task, model, parameters):
    network = build_model(task, model)
    assert count_parameters(network) == parameters
    points = torch.tensor([[4, 4], [30, 40], [59, 59]])
    outputs = network(TASKS[task].inputs(points))
    if task == "rendering":
        assert isinstance(outputs, Rendering) and outputs.image_logits.shape == (3, 4096)
        assert (outputs.centre_logits is None) == (model == "conv")
    else:
        assert outputs.shape == ((3, 4096) if task == "classification" else (3, 2))
    assert TASKS[task].loss(outputs, points).ndim == 0


def test_regressor_starts_with_zero_coordinate_weights():
    first = build_model("regression", "coordconv").net[0]
    assert first.weight.shape == (8, 3, 1, 1)
    assert torch.count_nonzero(first.weight[:, 1:]) == 0 and torch.count_nonzero(first.weight[:, 0]) == 8


def test_rendering_scores_the_painted_square_and_adds_the_centre_loss():
    points = torch.tensor([[10, 20], [40, 50]])
    perfect = 5.0 * (2 * square_images(points).flatten(1) - 1)  # +-5 logits on the true squares
    centre = torch.full((2, 4096), -10.0)
    centre[0, 10 * 64 + 20] = centre[1, 40 * 64 + 50] = 10.0
    task = TASKS["rendering"]
    assert task.scores(Rendering(perfect, None), points) == {"iou": 1.0}
    image_loss = task.loss(Rendering(perfect, None), points).item()
    assert image_loss == pytest.approx(math.log1p(math.exp(-5.0)), rel=1e-4)
    with_centre = task.loss(Rendering(perfect, centre), points).item()
    assert with_centre - image_loss == pytest.approx(math.log1p(4095 * math.exp(-20.0)), abs=1e-6)


def test_classification_targets_are_the_centre_pixels():
    points = torch.tensor([[4, 59], [30, 7]])
    logits = torch.full((2, 4096), -10.0)
    logits[0, 4 * 64 + 59] = logits[1, 30 * 64 + 7] = 10.0
    assert TASKS["classification"].scores(logits, points) == {"accuracy": 1.0}
    expected_loss = math.log1p(4095 * math.exp(-20.0))  # cross-entropy with a margin of 20
    assert TASKS["classification"].loss(logits, points).item() == pytest.approx(expected_loss, abs=1e-6)  # float32


def test_bad_names_get_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("classification", "resnet")
    with pytest.raises(ValueError, match="unknown task 'detection'"):
        build_model("detection", "coordconv")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"split": "diagonal"}, "unknown split 'diagonal'; choose one of"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0, got 0.0"),
        ({"checks_per_epoch": 0}, "checks_per_epoch must be >= 1, got 0"),
    ],
)
def test_bad_training_settings_are_refused_before_training(settings, message):
    with pytest.raises(ValueError, match=message):
        train(TrainConfig("regression", **{"split": "quadrant", **settings}), progress=False)


def record_what_training_sees(monkeypatch, task_name):
    """Wrap the task's loss and the evaluation that ``train()`` uses: return the centres each
    training batch held and the centres of each evaluation call."""
    trained, evaluated = [], []
    task = train_module.TASKS[task_name]

    def loss(outputs, points):
        trained.append(points.clone())
        return task.loss(outputs, points)

    def evaluate(model, task_, points, batch_size=16):
        evaluated.append(points.clone())
        return original_evaluate(model, task_, points, batch_size)

    original_evaluate = train_module.evaluate
    monkeypatch.setitem(train_module.TASKS, task_name, dataclasses.replace(task, loss=loss))
    monkeypatch.setattr(train_module, "evaluate", evaluate)
    return trained, evaluated


def as_set(points) -> set:
    return (
        {tuple(point) for point in torch.cat(points).tolist()}
        if isinstance(points, list)
        else {tuple(p) for p in points.tolist()}
    )


def test_training_never_sees_the_held_out_quadrant(monkeypatch):
    trained, evaluated = record_what_training_sees(monkeypatch, "regression")
    result = train(TrainConfig("regression", "quadrant", "coordconv", epochs=1, stop_when_solved=False), progress=False)
    seen = as_set(trained)
    held_out = {(i, j) for i in range(33, 60) for j in range(33, 60)}  # both coordinates > 32, centres 4..59
    everything = {(i, j) for i in range(4, 60) for j in range(4, 60)}
    assert seen == everything - held_out  # one epoch visits every training centre, and only those
    test_checks, final_train_check = evaluated[:-1], evaluated[-1]
    assert len(test_checks) == len(result.history) == 4
    assert all(as_set(points) == held_out and len(points) == 729 for points in test_checks)
    assert as_set(final_train_check) == seen


def test_uniform_split_trains_and_tests_on_disjoint_centres(monkeypatch):
    trained, evaluated = record_what_training_sees(monkeypatch, "regression")
    train(TrainConfig("regression", "uniform", "coordconv", epochs=1, stop_when_solved=False), progress=False)
    seen, tested = as_set(trained), as_set(evaluated[0])
    assert len(seen) == 2509 and len(tested) == 627
    assert seen.isdisjoint(tested) and len(seen | tested) == 3136
    assert all(as_set(points) == tested for points in evaluated[:-1])


def test_same_seed_same_model_other_seed_other_model():
    def trained_weights(seed):
        config = TrainConfig(
            "regression", "uniform", "coordconv", epochs=1, seed=seed, stop_when_solved=False, checks_per_epoch=1
        )
        return train(config, progress=False).model.state_dict()

    first = trained_weights(0)
    again, other = trained_weights(0), trained_weights(1)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


QUICK = {"epochs": 2, "batch_size": 16, "learning_rate": 0.01}


def test_coordconv_classifies_the_held_out_quadrant_perfectly():
    result = train(TrainConfig("classification", "quadrant", "coordconv", **QUICK, stop_when_solved=False), progress=False)
    assert result.test["accuracy"] == 1.0
    assert result.train["accuracy"] == 1.0
    assert result.epochs_to_threshold is not None and result.epochs_to_threshold <= 2


def test_deconv_model_fails_the_held_out_quadrant_with_the_same_budget():
    result = train(TrainConfig("classification", "quadrant", "conv", **QUICK), progress=False)
    assert result.epochs_run == 2 and result.epochs_to_threshold is None
    assert result.test["accuracy"] < 0.1


def test_coordconv_regresses_the_held_out_quadrant_to_the_exact_pixel():
    result = train(TrainConfig("regression", "quadrant", "coordconv", epochs=2), progress=False)
    assert result.epochs_to_threshold is not None
    assert result.test["pixel_accuracy"] >= 0.99 and result.test["mse_pixels"] < 0.1


def test_conv_regressor_fails_the_held_out_quadrant_with_the_same_budget():
    result = train(TrainConfig("regression", "quadrant", "conv", epochs=2), progress=False)
    assert result.epochs_to_threshold is None
    assert result.test["pixel_accuracy"] < 0.1 and result.test["mse_pixels"] > 10.0


def test_coordconv_renders_the_held_out_quadrant():
    result = train(TrainConfig("rendering", "quadrant", "coordconv", epochs=2), progress=False)
    assert result.test["iou"] >= 0.99
    assert result.history[0]["epoch"] == pytest.approx(0.25, abs=0.01)  # four test checks per epoch


def test_report_and_figures_cover_every_task(tmp_path):
    results = []
    for task in TASKS:
        for model in ("conv", "coordconv"):
            solved = model == "coordconv"
            results.append(
                TrainResult(
                    config=TrainConfig(task, "quadrant", model, epochs=3, learning_rate=0.01),
                    parameters=count_parameters(build_model(task, model)),
                    epochs_run=1.5 if solved else 3.0,
                    seconds=10.0 if solved else 30.0,
                    train={TASKS[task].metric: 1.0},
                    test={TASKS[task].metric: 1.0 if solved else 0.2},
                    epochs_to_threshold=1.5 if solved else None,
                    seconds_to_threshold=10.0 if solved else None,
                    model=build_model(task, model),
                )
            )
    report = markdown(results, machine="test")
    assert report.count("> 3x (conv unsolved after 30 s)") == 3
    paths = save_figures(results, tmp_path)
    assert sorted(path.name for path in paths) == sorted(f"{task}_quadrant.png" for task in TASKS)
    for path in paths:
        image = matplotlib.image.imread(path)[..., :3]
        height, width = image.shape[:2]
        if path.name.startswith("regression"):
            assert width > 1.5 * height  # two scatter panels side by side
            red_crosses = (image[..., 0] > 0.8) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3)
            assert red_crosses.sum() > 100  # the predictions are drawn
        else:
            assert width > 1.2 * height  # 2 rows (conv, CoordConv) of 4 examples
            assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # heatmaps, not a blank canvas


def test_script_writes_the_report_and_refuses_to_overwrite_it(tmp_path, capsys):
    from rl_coordconv.commands import supervised as script

    out = tmp_path / "report"
    argv = ["--task", "regression", "--split", "quadrant", "--model", "coordconv", "--epochs", "1", "--out", str(out)]
    assert script.main(argv) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(row["task"], row["split"], row["model"], row["parameters"]) for row in rows] == [
        ("regression", "quadrant", "coordconv", "906")
    ]
    assert (out / "regression_quadrant.png").stat().st_size > 0 and "| regression | quadrant | coordconv | 906 |" in (
        out / "results.md"
    ).read_text()
    assert any((out / "tb" / "regression-quadrant-coordconv").iterdir())
    assert script.main(argv) == 2
    assert "is not empty" in capsys.readouterr().err
    assert script.main(["--checks-per-epoch", "0", "--out", str(tmp_path / "other")]) == 2


class OpsMixingDevices(TorchDispatchMode):
    """Records every op whose tensor arguments (beyond scalars) lie on more than one device: on a
    GPU each such op copies a host tensor to the device and waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.mixed: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [value for value in tree_flatten((args, kwargs or {}))[0] if isinstance(value, torch.Tensor)]
        if len({tensor.device for tensor in tensors if tensor.dim() > 0}) > 1:
            self.mixed.append(str(func))
        return func(*args, **(kwargs or {}))


def test_a_batch_is_made_on_the_device_of_its_points():
    """The inputs and targets of every batch are built where the points are: no host tensor enters
    (checked on the meta device, which stands for any other than the CPU)."""
    points = torch.as_tensor(centres()[:5]).to("meta")
    with OpsMixingDevices() as recorder:
        for make in (one_hot_images, square_images, normalized_coordinates, unit_coordinates):
            assert make(points).device.type == "meta"
    assert recorder.mixed == []


# ------------------------------------------------------------------ the shared loop and layer


class RecordingBar:
    """Stands in for tqdm: what fit asked of its progress bar."""

    def __init__(self, total, desc, disable, **kwargs):
        self.total, self.desc, self.disable = total, desc, disable
        self.updates, self.postfixes, self.closed = 0, [], False

    def __enter__(self):
        bars.append(self)
        return self

    def __exit__(self, *exc):
        self.closed = True

    def update(self):
        self.updates += 1

    def set_postfix(self, values):
        self.postfixes.append(dict(values))


bars: list[RecordingBar] = []


class RecordingWriter:
    def __init__(self):
        self.scalars = []  # (tag, value, step)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def least_squares_fit(monkeypatch, **options):
    """fit() on 10 examples of a linear model, batches of 4 (4, 4, 2 per epoch), 3 epochs, checks
    after steps 2 and 3 of each epoch; returns the result and what the step, check, bar and writer saw."""
    from rl_coordconv.supervised import fitting

    monkeypatch.setattr(fitting, "tqdm", RecordingBar)
    bars.clear()
    torch.manual_seed(0)
    inputs, targets = torch.randn(10, 3), torch.randn(10, 1)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=9)
    seen = {"batches": [], "modes": [], "checked_after": []}

    def step(indices):
        seen["batches"].append(indices.clone())
        seen["modes"].append(model.training)
        loss = torch.nn.functional.mse_loss(model(inputs[indices]), targets[indices])
        fitting.minimize(optimizer, loss)
        return {"loss": loss}

    def check():
        model.eval()  # as an evaluation does: fit puts the model back in training mode
        seen["checked_after"].append(len(seen["batches"]))
        return {"test/steps": float(len(seen["batches"]))}

    writer = RecordingWriter()
    result = fitting.fit(
        model,
        step,
        10,
        epochs=3,
        batch_size=4,
        generator=torch.Generator().manual_seed(7),
        schedule=schedule,
        check=check,
        checks_per_epoch=2,
        description="toy",
        writer=writer,
        **options,
    )
    return result, seen, bars[0], writer, model, optimizer


def test_fit_trains_as_the_loop_written_out(monkeypatch):
    result, seen, bar, writer, model, optimizer = least_squares_fit(monkeypatch)

    # The loop fit stands for, written out: a seeded order per epoch, cut into batches, an update
    # per batch and a schedule step after it.
    torch.manual_seed(0)
    inputs, targets = torch.randn(10, 3), torch.randn(10, 1)
    reference = torch.nn.Linear(3, 1)
    reference_optimizer = torch.optim.Adam(reference.parameters(), lr=0.1)
    reference_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(reference_optimizer, T_max=9)
    generator = torch.Generator().manual_seed(7)
    batches, losses = [], []
    for _epoch in range(3):
        order = torch.randperm(10, generator=generator)
        for indices in (order[0:4], order[4:8], order[8:10]):
            loss = torch.nn.functional.mse_loss(reference(inputs[indices]), targets[indices])
            reference_optimizer.zero_grad()
            loss.backward()
            reference_optimizer.step()
            reference_schedule.step()
            batches.append(indices)
            losses.append(loss.item())

    assert len(seen["batches"]) == 9 and all(torch.equal(a, b) for a, b in zip(seen["batches"], batches))
    assert all(seen["modes"])
    assert all(optimizer.state[p]["step"] == 9 for p in model.parameters())
    assert optimizer.param_groups[0]["lr"] == reference_optimizer.param_groups[0]["lr"]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    # Checks after steps 2 (round(3 / 2)) and 3 of each epoch.
    assert seen["checked_after"] == [2, 3, 5, 6, 8, 9]
    assert result.steps == 9 and result.seconds > 0
    assert [record["epoch"] for record in result.history] == pytest.approx([2 / 3, 1, 5 / 3, 2, 8 / 3, 3])
    assert result.epochs == 3
    assert [record["train/loss"] for record in result.history] == pytest.approx([losses[s - 1] for s in (2, 3, 5, 6, 8, 9)])
    assert [record["test/steps"] for record in result.history] == [2, 3, 5, 6, 8, 9]
    # The bar: one tick a step, the last record's values at each check, closed.
    assert (bar.total, bar.desc, bar.disable, bar.updates, bar.closed) == (9, "toy", False, 9, True)
    assert len(bar.postfixes) == 6 and bar.postfixes[-1]["test/steps"] == "9"
    # TensorBoard: each step's loss at its step, and each check's values and seconds at its step.
    train = [(step, value) for tag, value, step in writer.scalars if tag == "train/loss"]
    assert [step for step, _ in train] == list(range(1, 10)) and [value for _, value in train] == pytest.approx(losses)
    assert [(value, step) for tag, value, step in writer.scalars if tag == "test/steps"] == [
        (s, s) for s in (2, 3, 5, 6, 8, 9)
    ]
    assert [step for tag, _, step in writer.scalars if tag == "seconds"] == [2, 3, 5, 6, 8, 9]
    assert {tag for tag, _, _ in writer.scalars} == {"train/loss", "test/steps", "seconds"}


def test_fit_stops_at_the_first_check_the_stop_rule_accepts(monkeypatch):
    result, seen, bar, _, _, _ = least_squares_fit(monkeypatch, stop=lambda record: record["epoch"] > 1.5, progress=False)
    assert len(seen["batches"]) == result.steps == 5  # the check after epoch 2's second batch
    assert result.epochs == pytest.approx(5 / 3) and len(result.history) == 3
    assert bar.disable and bar.closed


@pytest.mark.parametrize("arch, layer_type, weight_inputs", [("conv", torch.nn.Conv2d, 3), ("coordconv", CoordConv2d, 5)])
def test_the_layer_factory_gives_each_arch_its_convolution(arch, layer_type, weight_inputs):
    layer = conv_layer(arch, 3, 8, 4, stride=2, padding=1, bias=False)
    assert type(layer) is layer_type
    assert layer.weight.shape == (8, weight_inputs, 4, 4)  # CoordConv2d's weight: 2 coordinate input channels more
    assert (layer.stride, layer.padding, layer.bias) == ((2, 2), (1, 1), None)
    assert layer(torch.zeros(2, 3, 32, 32)).shape == (2, 8, 16, 16)


def test_the_layer_factory_and_the_configs_refuse_other_archs():
    assert ARCHS == ("conv", "coordconv")
    with pytest.raises(ValueError, match=r"unknown arch 'baseline'; choose one of \('conv', 'coordconv'\)"):
        conv_layer("baseline", 3, 8, 3)
    with pytest.raises(ValueError, match=r"unknown arch 'baseline'; choose one of \('conv', 'coordconv'\)"):
        ClassificationConfig(arch="baseline").validate()
    with pytest.raises(ValueError, match=r"unknown model 'baseline'; choose one of \('coordconv', 'conv'\)"):
        TrainConfig(model="baseline").validate()


def test_model_baseline_still_runs_the_conv_model_and_says_the_new_name_once(tmp_path):
    out = tmp_path / "old-name"
    command = [
        str(Path(sys.executable).with_name("rl-coordconv")),
        "supervised",
        "--task",
        "regression",
        "--split",
        "quadrant",
        "--model",
        "baseline",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--checks-per-epoch",
        "1",
        "--out",
        str(out),
    ]
    ran = subprocess.run(command, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    warned = [line for line in ran.stderr.splitlines() if "warning" in line.lower()]
    assert warned == ["warning: --model baseline is now --model conv; the old name will go in a later version"]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(row["task"], row["model"], row["parameters"]) for row in rows] == [("regression", "conv", "72850")]
    assert "| regression | quadrant | conv | 72,850 |" in (out / "results.md").read_text()
