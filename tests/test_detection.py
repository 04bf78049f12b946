"""The detection experiment: scattered-digit canvases, the box measures, the two detectors, the command.

torchvision's wheels load only beside PyPI's torch, so `make test` runs this file a second time in
.venv-detection (`make detection-venv`), where it does not skip."""

import numpy as np
import pytest
import torch

from rl_coordconv.supervised import detection
from rl_coordconv.supervised.classification import load_digits

needs_torchvision = pytest.mark.skipif(
    not detection.available(), reason="torchvision does not load beside this torch; make test runs these in .venv-detection"
)


@pytest.fixture(scope="module")
def canvases():
    # The default sizes: enough one-digit canvases that layouts would repeat if nothing stopped them.
    return detection.digit_canvases(seed=3)


def test_each_box_is_the_tight_box_of_its_digit_and_the_label_its_digit(canvases):
    digit_images, digit_labels = load_digits()
    for part in canvases:
        for image, boxes, labels, indices in zip(part.images, part.boxes, part.labels, part.digit_indices):
            ink = image[0].numpy() > 0
            covered = np.zeros_like(ink)
            for (x1, y1, x2, y2), label, index in zip(boxes.int().tolist(), labels.tolist(), indices):
                digit = np.kron(digit_images[index], np.ones((2, 2))) / 16.0
                rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
                tight = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
                np.testing.assert_allclose(image[0, y1:y2, x1:x2].numpy(), tight, atol=1e-6)
                assert label == digit_labels[index] + 1
                covered[y1:y2, x1:x2] = True
            assert not (ink & ~covered).any(), "ink outside every box"


def test_digits_never_overlap_and_each_canvas_holds_one_to_four(canvases):
    for part in canvases:
        counts = [len(boxes) for boxes in part.boxes]
        assert min(counts) == 1 and max(counts) == 4
        for boxes in part.boxes:
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = boxes[i].tolist(), boxes[j].tolist()
                    width, height = min(ax2, bx2) - max(ax1, bx1), min(ay2, by2) - max(ay1, by1)
                    assert width <= 0 or height <= 0, f"boxes {boxes[i].tolist()} and {boxes[j].tolist()} overlap"


def test_train_and_test_canvases_share_no_digit_image_and_no_layout(canvases):
    train, test = canvases
    train_digits = set(np.concatenate(train.digit_indices).tolist())
    test_digits = set(np.concatenate(test.digit_indices).tolist())
    assert train_digits and test_digits and not train_digits & test_digits

    for part in canvases:  # the layouts are where the digits are
        for boxes, layout in zip(part.boxes, part.layouts):
            assert len(layout) == len(boxes)
            for x1, y1, x2, y2 in boxes.tolist():
                assert any(row <= y1 and y2 <= row + 16 and col <= x1 and x2 <= col + 16 for row, col in layout)
    assert len(set(train.layouts)) == len(train) and len(set(test.layouts)) == len(test)
    assert not set(train.layouts) & set(test.layouts)


def test_the_canvases_repeat_with_their_seed_and_change_with_another(canvases):
    again = detection.digit_canvases(seed=3)
    other = detection.digit_canvases(seed=4, train_canvases=100, test_canvases=10)
    assert torch.equal(again[0].images, canvases[0].images) and torch.equal(again[1].images, canvases[1].images)
    assert not torch.equal(other[0].images, canvases[0].images[:100])


@needs_torchvision
def test_mean_iou_recall_and_map_on_boxes_written_out():
    targets = [
        {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]]), "labels": torch.tensor([1, 1, 2])}
    ]
    predictions = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 35], [40, 0, 50, 10]]),
            "labels": torch.tensor([1, 1, 1, 2]),
            "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]),
        }
    ]
    measures = detection.detection_metrics(predictions, targets)
    # Best IoUs 1, 100 / 150 (the box 5 pixels too tall), 1.
    assert measures["mean_iou"] == pytest.approx((1 + 100 / 150 + 1) / 3)
    assert measures["recall_50"] == pytest.approx(1.0)
    # Digit 1 ranked: hit, miss, hit -> precision 1 up to recall 0.5, then 2/3: COCO's 101 recall
    # points give (51 * 1 + 50 * 2/3) / 101. Digit 2: one hit, AP 1.
    assert measures["map_50"] == pytest.approx(((51 + 50 * 2 / 3) / 101 + 1) / 2, abs=1e-4)


@needs_torchvision
def test_mean_iou_takes_any_digit_and_recall_the_right_one_above_the_score_threshold():
    targets = [{"boxes": torch.tensor([[8.0, 8, 24, 24]]), "labels": torch.tensor([3])}]
    predictions = [
        {
            "boxes": torch.tensor([[8.0, 8, 24, 24], [8.0, 8, 24, 20]]),
            "labels": torch.tensor([5, 3]),
            "scores": torch.tensor([0.9, 0.3]),
        }
    ]
    measures = detection.detection_metrics(predictions, targets)
    assert measures["mean_iou"] == pytest.approx(1.0) and measures["recall_50"] == 0.0
    low = detection.detection_metrics(predictions, targets, score_threshold=0.2)
    assert low["recall_50"] == 1.0
    none = detection.detection_metrics([{key: value[:0] for key, value in predictions[0].items()}], targets)
    assert none["mean_iou"] == 0.0 and none["recall_50"] == 0.0 and none["map_50"] == 0.0


@needs_torchvision
def test_mean_iou_ignores_a_better_box_below_the_score_threshold():
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}]
    predictions = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 20], [0.0, 0, 10, 10]]),
            "labels": torch.tensor([1, 1]),
            "scores": torch.tensor([0.9, 0.3]),
        }
    ]
    assert detection.detection_metrics(predictions, targets)["mean_iou"] == pytest.approx(0.5)  # 100 / 200


def _result(arch, seed, **metrics):
    return detection.DetectionResult(
        detection.DetectionConfig(arch=arch, seed=seed, epochs=3),
        1234 if arch == "conv" else 5678,
        9.0,
        {"mean_iou": 0.0, "map_50": 0.0, "recall_50": 0.0, **metrics},
        None,
        [],
        [],
    )


def test_the_report_pairs_by_seed_and_the_relative_change_is_over_conv():
    from rl_coordconv.supervised import detection_report

    results = [
        _result("conv", 0, mean_iou=0.4),
        _result("coordconv", 0, mean_iou=0.5),
        _result("conv", 1, mean_iou=0.8),
        _result("coordconv", 1, mean_iou=0.6),
    ]
    differences, relative = detection_report.paired(results, "mean_iou")
    assert differences == [pytest.approx(0.1), pytest.approx(-0.2)] and relative == [pytest.approx(0.25), pytest.approx(-0.25)]


def test_the_plateau_rule_watches_the_per_epoch_test_mean_iou_of_every_seed():
    from rl_coordconv.supervised import detection_report

    def curve(ious, maps):  # epochs 1-5; the last fifth is epochs 4-5
        return [{"epoch": float(k + 1), "test/mean_iou": iou, "test/map_50": m} for k, (iou, m) in enumerate(zip(ious, maps))]

    results = [_result("conv", seed) for seed in (0, 1)] + [_result("coordconv", seed) for seed in (0, 1)]
    for r in results:
        r.config.epochs = 5
    results[0].history = curve([0.2, 0.5, 0.7, 0.80, 0.81], [0.1, 0.2, 0.3, 0.4, 0.5])  # 0.01 / 0.81: met
    results[1].history = curve([0.2, 0.5, 0.7, 0.74, 0.80], [0.5] * 5)  # 0.06 / 0.8: not met
    results[2].history = curve([0.2, 0.5, 0.6, 0.6, 0.6], [0.5] * 5)
    results[3].history = curve([0.2, 0.5, 0.6], [0.5] * 3)  # one seed short
    section = detection_report.plateau_markdown(results, tolerance=0.02)
    assert "| 0 | met (1.2 %) | met (0.0 %) |" in section
    assert "| 1 | not met (7.5 %) | cannot tell: stopped at epoch 3 of 5 |" in section
    assert "Met by 2 of 4 runs; not by conv seed 1 (not met), coordconv seed 1 (cannot tell)." in section
    assert "test mean IoU (on the first 100 test canvases, after each epoch)" in section


def test_the_csv_columns_hold_their_values(tmp_path):
    import csv

    from rl_coordconv.supervised import detection_report

    detection_report.write_csv([_result("conv", 0, mean_iou=0.4, map_50=0.3, recall_50=0.2)], tmp_path / "r.csv")
    (row,) = csv.DictReader((tmp_path / "r.csv").open())
    assert (row["arch"], row["seed"], row["parameters"], row["epochs"]) == ("conv", "0", "1234", "3")
    assert (row["mean_iou"], row["map_50"], row["recall_50"]) == ("0.4000", "0.3000", "0.2000")


@needs_torchvision
def test_the_batch_order_changes_with_the_seed(monkeypatch):
    orders, randperm = [], torch.randperm

    def spy(*args, **kwargs):
        order = randperm(*args, **kwargs)
        if "generator" in kwargs:  # train_detector's shuffle, not torchvision's samplers
            orders.append(order)
        return order

    monkeypatch.setattr(torch, "randperm", spy)
    for seed in (1, 2):
        detection.train_detector(
            detection.DetectionConfig(seed=seed, train_canvases=16, test_canvases=4, epochs=1, batch_size=16), progress=False
        )
    assert len(orders) == 2 and not torch.equal(orders[0], orders[1])


@needs_torchvision
def test_the_learning_curve_is_measured_on_test_canvases(monkeypatch):
    from types import SimpleNamespace

    seen, predict = [], detection.predict
    monkeypatch.setattr(
        detection, "predict", lambda model, images, *a, **k: seen.append(images) or predict(model, images, *a, **k)
    )
    config = detection.DetectionConfig(seed=1, train_canvases=8, test_canvases=8, epochs=1, batch_size=8)
    detection.train_detector(config, progress=False, writer=SimpleNamespace(add_scalar=lambda *a, **k: None))
    test = detection.digit_canvases(1, 8, 8)[1]
    assert torch.equal(seen[0], test.images[: detection.MONITORED])


@needs_torchvision
def test_the_coordconv_detector_has_coordconv_where_stated_and_the_conv_one_none():
    from rl_coordconv.layers import CoordConv2d

    coordconv, conv = detection.build_detector("coordconv"), detection.build_detector("conv")
    placed = {name for name, module in coordconv.named_modules() if isinstance(module, CoordConv2d)}
    assert placed == {"backbone.0", "rpn.head.conv.0.0"}
    assert not any(isinstance(module, CoordConv2d) for module in conv.modules())
    images = list(torch.zeros(2, 1, 64, 64))
    coordconv.eval()
    with torch.no_grad():
        outputs = coordconv(images)
    assert [sorted(output) for output in outputs] == [["boxes", "labels", "scores"]] * 2


@needs_torchvision
def test_seeded_training_repeats():
    config = detection.DetectionConfig(arch="coordconv", seed=1, train_canvases=32, test_canvases=8, epochs=1)
    first, second = (detection.train_detector(config, progress=False) for _ in range(2))
    assert first.metrics == second.metrics
    for a, b in zip(first.example_predictions, second.example_predictions):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


@pytest.mark.parametrize("name", ["train_canvases", "test_canvases", "epochs", "batch_size", "width"])
def test_bad_settings_are_named(name):
    with pytest.raises(ValueError, match="unknown arch 'coord'"):
        detection.DetectionConfig(arch="coord").validate()
    with pytest.raises(ValueError, match=f"{name} must be >= 1, got 0"):
        detection.DetectionConfig(**{name: 0}).validate()


def test_without_torchvision_the_command_says_how_to_get_it(monkeypatch, tmp_path, capsys):
    from rl_coordconv.commands.supervised import main

    monkeypatch.setitem(__import__("sys").modules, "torchvision", None)  # import torchvision -> ImportError
    assert main(["--experiment", "detection", "--quick", "--out", str(tmp_path / "out")]) == 2
    assert "make detection-venv" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_all_leaves_detection_out_only_where_torchvision_does_not_load(monkeypatch, capsys):
    from rl_coordconv.supervised import experiments as command

    if detection.available():
        assert command.chosen_experiments("all") == ["not-so-clevr", "vae", "gan", "classification", "detection"]
    monkeypatch.setitem(__import__("sys").modules, "torchvision", None)
    assert command.chosen_experiments("all") == ["not-so-clevr", "vae", "gan", "classification"]
    assert "leaves out detection" in capsys.readouterr().out
    assert command.chosen_experiments("detection") == ["detection"]


@needs_torchvision
def test_the_command_plans_five_seeds_and_a_quick_one():
    from types import SimpleNamespace

    from rl_coordconv.supervised import experiments as command

    args = SimpleNamespace(quick=False, seeds=None, seed=2, epochs=None, learning_rate=None, batch_size=None, device="cpu")
    configs = command.plan("detection", args)
    assert [(c.arch, c.seed, c.epochs, c.batch_size) for c in configs] == [
        (arch, seed, 20, 16) for seed in (2, 3, 4, 5, 6) for arch in ("conv", "coordconv")
    ]
    args.quick, args.epochs, args.batch_size = True, 2, 4
    quick = command.plan("detection", args)
    assert [(c.seed, c.train_canvases, c.epochs, c.batch_size) for c in quick] == [(2, 64, 2, 4), (2, 64, 2, 4)]


@needs_torchvision
def test_the_quick_command_writes_its_report_figure_and_logs(tmp_path):
    from rl_coordconv.commands.supervised import main

    out = tmp_path / "detection"
    assert main(["--experiment", "detection", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    report = (out / "results.md").read_text()
    assert "mean IoU" in report and "CoordConv - conv" in report and "the paper: about +24 %" in report
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("experiment,arch,seed") and len(rows) == 1 + 4
    assert (out / "detection-examples.png").stat().st_size > 0
    assert len(list((out / "tb").glob("detection-*-seed*/events.out.tfevents.*"))) == 4
    assert (out / "measures.png").stat().st_size > 0
    assert "Relative change of the mean IoU, CoordConv over conv, paired by seed: " in report
    why = "cannot tell: 1 measure in epochs 0.8-1; measure more often"  # --quick: one epoch
    assert f"| 0 | {why} | {why} |" in report and f"| 1 | {why} | {why} |" in report
