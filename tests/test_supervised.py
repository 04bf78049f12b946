import math
import time

import numpy as np
import pytest
import torch

from rl_coordconv.supervised import TrainConfig, train
from rl_coordconv.supervised.data import centres, one_hot_images, split_indices, square_images
from rl_coordconv.supervised.metrics import accuracy
from rl_coordconv.supervised.models import build_model, count_parameters
from rl_coordconv.supervised.train import TASKS


def test_dataset_has_every_centre_once():
    start = time.perf_counter()
    points = centres()
    assert points.shape == (3136, 2)
    assert points.min() == 4 and points.max() == 59
    assert len({tuple(p) for p in points}) == 3136
    images, squares = one_hot_images(torch.as_tensor(points)), square_images(torch.as_tensor(points))
    assert time.perf_counter() - start < 1.0
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


@pytest.mark.parametrize("model, parameters", [("coordconv", 7553), ("baseline", 103_585)])
def test_models_match_the_official_parameter_counts_and_shapes(model, parameters):
    network = build_model("classification", model)
    assert count_parameters(network) == parameters
    points = torch.tensor([[4, 4], [30, 40], [59, 59]])
    assert network(TASKS["classification"].inputs(points)).shape == (3, 4096)


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


QUICK = {"epochs": 2, "batch_size": 16, "learning_rate": 0.01}


def test_coordconv_classifies_the_held_out_quadrant_perfectly():
    torch.set_num_threads(2)
    result = train(TrainConfig("classification", "quadrant", "coordconv", **QUICK), progress=False)
    assert result.test["accuracy"] == 1.0
    assert result.train["accuracy"] == 1.0
    assert result.epochs_to_threshold is not None and result.epochs_to_threshold <= 2


def test_deconv_baseline_fails_the_held_out_quadrant_with_the_same_budget():
    result = train(TrainConfig("classification", "quadrant", "baseline", **QUICK), progress=False)
    assert result.epochs_run == 2 and result.epochs_to_threshold is None
    assert result.test["accuracy"] < 0.1
