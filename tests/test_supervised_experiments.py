"""The paper's other supervised experiments: the VAE and GAN (Sort-of-CLEVR scenes, the object
finder, the position measures, the models' CoordConv layers) and the classification control
(digits at random positions, the small ResNet, the t-interval), each through the command's quick run."""

import time

import numpy as np
import pytest
import torch

from rl_coordconv.analysis.statistics import mean_interval
from rl_coordconv.layers import CoordConv2d
from rl_coordconv.supervised import experiments as registry
from rl_coordconv.supervised import parallel, shapes
from rl_coordconv.supervised.generative import (
    VAE,
    Decoder,
    Encoder,
    GenerativeConfig,
    interpolate,
    spectrally_normalized,
    train_generative,
)
from rl_coordconv.supervised.objects import (
    FoundObject,
    centre_histogram,
    find_objects,
    interpolation_measures,
    position_coverage,
)


def blank() -> np.ndarray:
    return np.zeros((3, shapes.SIZE, shapes.SIZE), dtype=np.float32)


# ---------------------------------------------------------------------------------- the scenes


def test_a_square_and_a_circle_are_painted_where_and_as_large_as_stated():
    image = blank()
    shapes.draw(image, shapes.SHAPES.index("square"), 0, row=5, col=20)  # red 7x7 square
    shapes.draw(image, shapes.SHAPES.index("circle"), 2, row=20, col=8)  # blue circle, radius 3
    red = (image[0] == 1) & (image[1] == 0) & (image[2] == 0)
    assert red.sum() == 49 and red[2:9, 17:24].all()
    blue = (image[2] == 1) & (image[0] == 0)
    assert blue.sum() == 29  # the pixels within distance 3 of a centre: 1 + 4 + 8 + 16
    assert blue[20, 5] and blue[20, 11] and blue[17, 8] and not blue[17, 5]


def test_scenes_hold_one_or_two_apart_objects_drawn_at_their_recorded_centres():
    scenes = shapes.generate(400, seed=3)
    counts = (scenes.objects[:, :, 0] >= 0).sum(axis=1)
    assert set(counts.tolist()) == {1, 2} and 0.4 < (counts == 2).mean() < 0.6
    both = scenes.objects[counts == 2]
    gaps = np.abs(both[:, 0, 2:] - both[:, 1, 2:]).max(axis=1)
    assert gaps.min() >= shapes.MIN_GAP  # never touching
    assert (both[:, 0, 1] != both[:, 1, 1]).all()  # two colours
    for image, objects in zip(scenes.images[:50].numpy(), scenes.objects[:50]):
        for _shape, colour, row, col in objects[objects[:, 0] >= 0]:
            np.testing.assert_array_equal(image[:, row, col], shapes.PALETTE[colour])
    centres = scenes.centres()
    assert centres.min() == shapes.RADIUS and centres.max() == shapes.SIZE - 1 - shapes.RADIUS  # whole shapes, edge to edge


def test_scenes_repeat_with_their_seed_and_differ_with_another():
    first, again, other = shapes.generate(20, seed=1), shapes.generate(20, seed=1), shapes.generate(20, seed=2)
    assert torch.equal(first.images, again.images) and (first.objects == again.objects).all()
    assert not torch.equal(first.images, other.images)
    with pytest.raises(ValueError, match="max_objects must be 1 or 2, got 3"):
        shapes.generate(5, seed=0, max_objects=3)


def test_interpolation_ends_hold_one_same_object_far_apart_and_repeat_with_their_seed():
    start, end = shapes.moving_object_pairs(30, seed=4)
    assert (start.objects[:, 1] == -1).all() and (end.objects[:, 1] == -1).all()  # one object each
    np.testing.assert_array_equal(start.objects[:, 0, :2], end.objects[:, 0, :2])  # same shape, same colour
    distances = np.hypot(*(start.objects[:, 0, 2:] - end.objects[:, 0, 2:]).T)
    assert distances.min() >= 12
    for scenes in (start, end):
        for image, (shape, colour, row, col) in zip(scenes.images.numpy(), scenes.objects[:, 0]):
            painted = (image.sum(axis=0) > 0).sum()
            assert painted == (49 if shapes.SHAPES[shape] == "square" else 29)
            np.testing.assert_array_equal(image[:, row, col], shapes.PALETTE[colour])
    again, _ = shapes.moving_object_pairs(30, seed=4)
    assert torch.equal(again.images, start.images)
    many, _ = shapes.moving_object_pairs(200, seed=0)
    assert set(many.objects[:, 0, 0].tolist()) == {0, 1} and set(many.objects[:, 0, 1].tolist()) == set(range(6))


# -------------------------------------------------------------------------- the object finder


def test_the_finder_gives_each_object_its_colour_centroid_and_area():
    image = blank()
    shapes.draw(image, 0, 3, row=10, col=12)  # yellow square
    shapes.draw(image, 1, 5, row=24, col=25)  # cyan circle
    image[:, 0, 0] = shapes.PALETTE[1]  # a stray green pixel: too small to be an object
    assert find_objects(image) == [FoundObject(3, 10.0, 12.0, 49), FoundObject(5, 24.0, 25.0, 29)]


def test_the_finder_reads_faded_colours_and_counts_a_split_object_twice():
    image = blank()
    shapes.draw(image, 0, 0, row=8, col=8)
    image *= 0.8  # a generator's not quite saturated red is still red
    image[:, 8, :] = 0.0  # a row cut through the square: two objects of 21 pixels
    found = find_objects(image)
    assert [(o.colour, o.area) for o in found] == [(0, 21), (0, 21)]
    assert [o.row for o in found] == [6.0, 10.0]
    assert find_objects(blank() + 0.5) == []  # grey is no palette colour


def test_the_finder_keeps_regions_of_eight_pixels_and_drops_seven():
    image = blank()
    image[:, 2:4, 2:6] = shapes.PALETTE[4][:, None, None]  # 2 x 4 = 8 magenta pixels
    image[:, 20, 10:17] = shapes.PALETTE[2][:, None]  # 7 blue pixels in a row
    assert find_objects(image) == [FoundObject(4, 2.5, 3.5, 8)]


def test_centre_histograms_and_coverage_by_hand():
    # Canvas of 32 in 2 x 2 cells of 16 pixels.
    data = np.array([[1.0, 1.0], [1.0, 20.0], [20.0, 20.0], [20.0, 20.0]])
    np.testing.assert_allclose(centre_histogram(data, cells=2), [[0.25, 0.25], [0.0, 0.5]])
    generated = np.array([[2.0, 3.0], [2.0, 3.0], [30.0, 30.0], [17.0, 1.0]])  # 0.5 | 0, 0.25 | 0.25
    coverage = position_coverage(data, generated, cells=2)
    # TV = (|0.25-0.5| + |0.25-0| + |0-0.25| + |0.5-0.25|) / 2 = 0.5; 2 of the data's 3 cells reached.
    assert coverage == pytest.approx({"histogram_distance": 0.5, "cells_reached": 2 / 3})
    assert position_coverage(data, data, cells=2) == {"histogram_distance": 0.0, "cells_reached": 1.0}
    assert position_coverage(data, np.zeros((0, 2)), cells=2) == {"histogram_distance": 1.0, "cells_reached": 0.0}


def test_interpolation_measures_by_hand():
    red, blue = 0, 2
    smooth = [[FoundObject(red, 5.0, 5.0 + 2 * t, 49), FoundObject(blue, 20.0, 20.0, 29)] for t in range(4)]
    broken = [[FoundObject(red, 5.0, 5.0, 49)], [], [FoundObject(red, 5.0, 9.0, 49)], [FoundObject(red, 8.0, 13.0, 49)]]
    empty = [[], [], []]
    measures = interpolation_measures([smooth, broken, empty])
    # smooth: 3 steps, red moves 2 px each, blue 0; broken: a vanish, a reappearance, then a 5 px
    # move; empty: 2 steps with nothing to follow, broken too.
    assert measures["broken_steps"] == pytest.approx(4 / 8)
    assert measures["mean_jump"] == pytest.approx((3 * 2 + 3 * 0 + 5) / 7)
    # Two objects of one colour: each is matched to the nearest in the next frame (1 px), not the other (15).
    twins = [
        [FoundObject(red, 5.0, 5.0, 49), FoundObject(red, 5.0, 20.0, 49)],
        [FoundObject(red, 5.0, 6.0, 49), FoundObject(red, 5.0, 21.0, 49)],
    ]
    assert interpolation_measures([twins])["mean_jump"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------- the models


@pytest.mark.parametrize("arch", ["conv", "coordconv"])
def test_coordconv_models_have_coordconv_in_every_convolution_and_conv_models_none(arch):
    for net, layers in ((Encoder(arch, 1), 3), (Decoder(arch, 8), 4), (VAE(arch), 7)):
        convolutions = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]  # CoordConv2d is one
        coordconvs = [m for m in convolutions if isinstance(m, CoordConv2d)]
        assert len(convolutions) == layers
        assert len(coordconvs) == (layers if arch == "coordconv" else 0)
    assert Decoder(arch, 8)(torch.zeros(2, 8)).shape == (2, 3, 32, 32)
    generator = Decoder(arch, 8, batch_norm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in generator.modules()) == 3  # none after the output
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in Decoder(arch, 8).modules())
    discriminator = spectrally_normalized(Encoder(arch, 1))
    weighted = [m for m in discriminator.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(weighted) == 4 and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in weighted)
    assert sum(isinstance(m, CoordConv2d) for m in discriminator.modules()) == (3 if arch == "coordconv" else 0)
    assert Encoder(arch, 5)(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_interpolations_run_straight_from_start_to_end():
    start, end = torch.tensor([[0.0, 2.0]]), torch.tensor([[4.0, -2.0]])
    codes = interpolate(start, end, 5)
    torch.testing.assert_close(codes[0], torch.tensor([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0], [3.0, -1.0], [4.0, -2.0]]))


QUICK = dict(train_scenes=128, test_scenes=32, epochs=1, samples=16, interpolations=2, steps=4)


@pytest.mark.parametrize("experiment", ["vae", "gan"])
def test_a_seeded_run_repeats(experiment):
    first = train_generative(GenerativeConfig(experiment, "coordconv", **QUICK), progress=False)
    again = train_generative(GenerativeConfig(experiment, "coordconv", **QUICK), progress=False)
    other = train_generative(GenerativeConfig(experiment, "coordconv", seed=1, **QUICK), progress=False)
    assert torch.equal(first.samples, again.samples)
    np.testing.assert_equal(first.metrics, again.metrics)  # nan (no objects yet) equals nan here
    assert not torch.equal(first.samples, other.samples)
    assert first.interpolation.shape == (2, 4, 3, 32, 32)


def test_a_gan_run_trains_a_normalized_pair_on_its_seeds_scenes_and_tests_on_others(monkeypatch):
    from rl_coordconv.supervised import generative

    seeds, normalized = [], []
    generate, normalize = generative.generate, generative.spectrally_normalized
    monkeypatch.setattr(generative, "generate", lambda n, seed: (seeds.append(seed), generate(n, seed))[1])
    monkeypatch.setattr(generative, "spectrally_normalized", lambda net: (normalized.append(net), normalize(net))[1])
    result = train_generative(GenerativeConfig("gan", "conv", seed=2, **QUICK), progress=False)
    assert seeds == [2, 10_002]  # the training scenes of seed 2, the test scenes another set
    assert len(normalized) == 1 and isinstance(normalized[0], Encoder)
    # Width 16, latent 16. Generator: linear 16 -> 512 (8,704), 3x3 convs 32->32 (9,248), 32->16
    # (4,624), 16->16 (2,320), 16->3 (435), batch norms 64 + 32 + 32. Discriminator: 4x4 convs
    # 3->16 (784), 16->32 (8,224), 32->32 (16,416), linear 512 -> 1 (513).
    assert result.parameters == 8_704 + 9_248 + 4_624 + 2_320 + 435 + 128 + 784 + 8_224 + 16_416 + 513


def test_vae_interpolations_start_and_end_at_the_encodings_of_one_object_at_two_places():
    from rl_coordconv.supervised.generative import _vae_interpolation_ends

    class CentreEncoder:
        """encode() gives each image's painted-pixel centroid ``(row, col)`` as its code."""

        def encode(self, images):
            painted = images.sum(dim=1) > 0
            rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
            area = painted.sum(dim=(1, 2))
            return torch.stack([(rows * painted).sum(dim=(1, 2)) / area, (cols * painted).sum(dim=(1, 2)) / area], 1), None

    start, end = _vae_interpolation_ends(CentreEncoder(), 5, seed=7, device=torch.device("cpu"))
    first, second = shapes.moving_object_pairs(5, seed=7)
    np.testing.assert_allclose(start.numpy(), first.objects[:, 0, 2:], atol=1e-5)  # each shape is symmetric
    np.testing.assert_allclose(end.numpy(), second.objects[:, 0, 2:], atol=1e-5)


def test_the_budgets_by_default():
    assert (GenerativeConfig("vae").epochs, GenerativeConfig("gan").epochs, GenerativeConfig("gan", epochs=3).epochs) == (
        100,
        120,
        3,
    )
    assert (GenerativeConfig().width, GenerativeConfig().latent) == (16, 16)


def test_the_strip_has_a_row_per_interpolation_and_the_animation_a_frame_per_step_there_and_back(tmp_path):
    import imageio.v2 as imageio

    from rl_coordconv.supervised.generative import GenerativeResult
    from rl_coordconv.supervised.generative_report import save_figures

    steps = torch.linspace(0.2, 0.8, 4)[None, :, None, None, None].expand(2, 4, 3, 32, 32)  # each step its own grey
    result = GenerativeResult(GenerativeConfig("vae", "conv"), 1, 1.0, {}, torch.zeros(8, 3, 32, 32), steps.clone())
    samples, strip, animation = save_figures([result], tmp_path)
    assert imageio.imread(strip).shape == (2 * 33 * 3, 4 * 33 * 3, 3)  # 33-pixel cells, upscaled 3x
    assert imageio.imread(samples).shape == (1 * 33 * 3, 8 * 33 * 3, 3)
    frames = imageio.mimread(animation)  # the interpolations side by side, one frame per step
    assert all(frame.shape == (1 * 33 * 3, 2 * 33 * 3, 3) for frame in frames)
    assert sorted({int(frame[0, 0, 0]) for frame in frames}) == [51, 102, 153, 204]  # 255 x 0.2, 0.4, 0.6, 0.8


def test_bad_generative_settings_are_refused_with_the_accepted_values():
    with pytest.raises(ValueError, match=r"unknown experiment 'detection'; choose one of \('vae', 'gan'\)"):
        GenerativeConfig("detection").validate()
    with pytest.raises(ValueError, match="steps must be >= 2 frames per interpolation, got 1"):
        GenerativeConfig(steps=1).validate()


def test_the_command_writes_report_figures_and_tensorboard_for_each_model(tmp_path):
    from rl_coordconv.commands import supervised as command

    out = tmp_path / "run"
    assert command.main(["--experiment", "gan", "--quick", "--out", str(out)]) == 0
    names = {path.name for path in out.iterdir()}
    for arch in ("conv", "coordconv"):
        assert {f"gan-{arch}-samples.png", f"gan-{arch}-interpolation.png", f"gan-{arch}-interpolation.gif"} <= names
        assert list((out / "tb" / f"gan-{arch}-seed0").glob("events.out.tfevents.*"))
    report = (out / "results.md").read_text()
    assert "| measure | conv | coordconv |" in report and "interpolation steps where an object vanishes" in report
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("experiment,arch,seed,parameters") and len(rows) == 3
    assert command.main(["--experiment", "gan", "--quick", "--out", str(out)]) == 2  # never overwritten


def test_the_generative_table_gives_each_measure_its_mean_and_t_interval_over_seeds():
    from rl_coordconv.supervised.generative import GenerativeResult
    from rl_coordconv.supervised.generative_report import markdown

    def result(arch, seed, distance):
        seconds = (60.0 if arch == "conv" else 120.0) + seed
        return GenerativeResult(
            GenerativeConfig("gan", arch, seed=seed),
            10,
            seconds,
            {"samples_histogram_distance": distance},
            torch.zeros(1, 3, 32, 32),
            torch.zeros(1, 2, 3, 32, 32),
        )

    table = markdown(
        [result("conv", seed, d) for seed, d in enumerate((0.1, 0.2, 0.3))]
        + [result("coordconv", seed, 0.05) for seed in range(3)]
    )
    # conv: mean 0.2, standard error 0.1 / sqrt(3), t(0.975, 2 dof) = 4.303: 0.2 -+ 0.248
    assert "### GAN (mean over seeds [0, 1, 2] with its 95 % t-interval)" in table
    assert "| object-centre histogram distance to the data (0 best) | 0.200 [-0.048, 0.448] | 0.050 [0.050, 0.050] |" in table
    assert "| training seconds per run | 61 | 121 |" in table
    one = markdown([result("conv", 4, 0.1)])
    assert "### GAN (seed 4)" in one and "| 0.100 |" in one
    # A seed without the measure (no objects, no jump) is left out and said so.
    missing = markdown([result("conv", 0, 0.1), result("conv", 1, float("nan")), result("conv", 2, 0.3)])
    assert "| 0.200 [-1.071, 1.471] (2 of 3 seeds) |" in missing  # t(0.975, 1 dof) = 12.706, se 0.1
    assert "| none found |" in markdown([result("conv", 0, float("nan"))])
    assert "| 0.100 (1 of 2 seeds) |" in markdown([result("conv", 0, 0.1), result("conv", 1, float("nan"))])


def test_the_command_runs_the_seeds_it_is_asked_for_and_refuses_bad_counts(capsys):
    from types import SimpleNamespace

    from rl_coordconv.commands import supervised as command

    args = SimpleNamespace(
        quick=True,
        seeds=None,
        seed=3,
        epochs=None,
        learning_rate=None,
        device="cpu",
        task="all",
        split="both",
        model="both",
        batch_size=None,
        no_early_stop=False,
        checks_per_epoch=4,
    )
    assert [(c.arch, c.seed) for c in registry.plan("vae", args)] == [("conv", 3), ("coordconv", 3)]
    assert sorted({c.seed for c in registry.plan("classification", args)}) == [3, 4]  # --quick: 2 seeds
    args.quick = False
    assert sorted({c.seed for c in registry.plan("classification", args)}) == [3, 4, 5, 6, 7]
    assert [(c.arch, c.seed, c.epochs) for c in registry.plan("vae", args)][-2:] == [("conv", 5, 100), ("coordconv", 5, 100)]
    assert [c.seed for c in registry.plan("gan", args)] == [3, 3, 4, 4, 5, 5]
    args.seeds = 2
    assert [(c.arch, c.seed) for c in registry.plan("gan", args)] == [
        ("conv", 3),
        ("coordconv", 3),
        ("conv", 4),
        ("coordconv", 4),
    ]
    with pytest.raises(ValueError, match="the Not-so-Clevr report is of one seed"):
        registry.plan("not-so-clevr", args)
    assert command.main(["--experiment", "vae", "--seeds", "0"]) == 2
    assert "--seeds must be >= 1, got 0" in capsys.readouterr().err


def test_the_budget_options_reach_every_experiment_when_given_and_only_then():
    from types import SimpleNamespace

    args = SimpleNamespace(
        quick=False,
        seeds=1,
        seed=0,
        epochs=None,
        learning_rate=None,
        batch_size=None,
        device="cpu",
        task="regression",
        split="uniform",
        model="coordconv",
        no_early_stop=False,
        checks_per_epoch=4,
    )
    experiments = ("not-so-clevr", "vae", "gan", "classification")
    defaults = [registry.plan(experiment, args)[0] for experiment in experiments]
    assert [config.batch_size for config in defaults] == [16, 64, 64, 64]
    assert [config.epochs for config in defaults[1:]] == [100, 120, 15]
    args.epochs, args.learning_rate, args.batch_size = 2, 0.01, 8
    for experiment in experiments:
        (config, *_) = registry.plan(experiment, args)
        assert (config.epochs, config.learning_rate, config.batch_size) == (2, 0.01, 8), experiment


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--experiment", "classification", "--epochs", "0"], "epochs must be >= 1, got 0"),
        (["--experiment", "classification", "--learning-rate", "0"], "learning_rate must be > 0, got 0.0"),
        (["--experiment", "vae", "--batch-size", "-8"], "batch_size must be >= 1, got -8"),
        (["--experiment", "classification", "--seed", "-1"], "seed must be >= 0, got -1"),
        *[
            (["--experiment", experiment, *option], f"{option[0]} applies to --experiment not-so-clevr only")
            for experiment, option in (
                ("gan", ["--task", "rendering"]),
                ("vae", ["--split", "uniform"]),
                ("classification", ["--model", "coordconv"]),
                ("vae", ["--no-early-stop"]),
                ("detection", ["--checks-per-epoch", "2"]),
            )
        ],
        (["--experiment", "vae", "--r1-penalty", "1"], "--r1-penalty applies to --experiment gan only"),
        (
            ["--experiment", "classification", "--measure-every", "2"],
            "--measure-every applies to --experiment vae or gan only",
        ),
        (
            ["--experiment", "classification", "--plateau-tolerance", "0.05"],
            "--plateau-tolerance applies to --experiment vae, gan or detection only",
        ),
        (
            ["--experiment", "gan", "--plateau-tolerance", "0"],
            "plateau tolerance must be a fraction > 0 (0.02 is 2 %), got 0.0",
        ),
        (["--experiment", "gan", "--discriminator-steps", "0"], "discriminator_steps must be >= 1, got 0"),
        (["--device", "gpu"], "unknown device 'gpu'; use cpu, cuda or cuda:<index>"),
        (["--device", "auto"], "unknown device 'auto'; use cpu, cuda or cuda:<index>"),
    ],
)
def test_bad_command_lines_are_refused_before_anything_is_written(argv, message, tmp_path, capsys, monkeypatch):
    from rl_coordconv.commands import supervised as command

    def training_started(*args):
        raise AssertionError(f"{argv} was accepted and training started")

    monkeypatch.setattr(registry, "train_runs", training_started)
    assert command.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------- the classification control

from rl_coordconv.supervised import classification  # noqa: E402


def test_digit_canvases_hold_each_digit_whole_at_an_offset_and_split_the_images_disjointly():
    digits, labels = classification.load_digits()
    train_images, train_labels, test_images, test_labels = classification.digit_canvases(seed=0)
    assert train_images.shape == (1438, 1, 16, 16) and test_images.shape == (359, 1, 16, 16)
    # Each digit image is pasted whole into exactly one canvas, train or test: the canvases' (ink,
    # label) pairs are the digit images', each once.
    canvases = []
    for images, image_labels in ((train_images, train_labels), (test_images, test_labels)):
        for canvas, label in zip(images[:, 0].numpy(), image_labels.tolist()):
            rows, cols = np.nonzero(canvas)
            assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8  # within one 8x8 paste
            canvases.append((round(float(canvas.sum()), 3), label))
    assert sorted(canvases) == sorted((round(float(d.sum()) / 16, 3), int(label)) for d, label in zip(digits, labels))
    other = classification.digit_canvases(seed=1)
    assert not torch.equal(other[0], train_images)  # another seed: other offsets and split


def test_the_coordconv_classifier_has_coordconv_at_the_bottom_only():
    for arch, expected in (("conv", []), ("coordconv", ["stem.0"])):
        model = classification.SmallResNet(arch)
        assert [name for name, m in model.named_modules() if isinstance(m, CoordConv2d)] == expected
        assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)


def test_the_t_interval_and_the_verdict_by_hand():
    mean, low, high = mean_interval(np.array([0.90, 0.92, 0.94]))
    half = 4.302652729911275 * 0.02 / np.sqrt(3)  # t(0.975, 2 dof) * sample std / sqrt(n)
    assert (mean, low, high) == pytest.approx((0.92, 0.92 - half, 0.92 + half))
    assert mean_interval(np.array([0.5])) == (0.5, 0.5, 0.5)

    def result(arch, seed, accuracy):
        return classification.ClassificationResult(classification.ClassificationConfig(arch, seed), 100, 1.0, 1.0, accuracy)

    same = [result("conv", s, a) for s, a in enumerate([0.90, 0.92, 0.94])] + [
        result("coordconv", s, a) for s, a in enumerate([0.91, 0.91, 0.95])
    ]
    assert classification.compare(same)["coordconv - conv"] == pytest.approx(mean_interval(np.array([0.01, -0.01, 0.01])))
    assert "no meaningful difference" in classification.markdown(same, "m")
    better = same[:3] + [result("coordconv", s, a + 0.05) for s, a in enumerate([0.90, 0.92, 0.94])]
    assert "CoordConv better" in classification.markdown(better, "m")
    worse = same[:3] + [result("coordconv", s, a - 0.05) for s, a in enumerate([0.90, 0.92, 0.94])]
    assert "-0.0500 [-0.0500, -0.0500]: CoordConv worse" in classification.markdown(worse, "m")
    assert "one seed: no interval, no verdict" in classification.markdown([same[0], same[3]], "m")


def test_each_classification_seed_gets_its_own_canvases(monkeypatch):
    asked, canvases = [], classification.digit_canvases
    monkeypatch.setattr(classification, "digit_canvases", lambda seed: (asked.append(seed), canvases(seed))[1])
    classification.train_classifier(classification.ClassificationConfig("conv", seed=2, epochs=1), progress=False)
    assert asked == [2]


def test_the_classification_command_writes_its_report(tmp_path):
    from rl_coordconv.commands import supervised as command

    out = tmp_path / "run"
    assert command.main(["--experiment", "classification", "--quick", "--out", str(out)]) == 0
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0] == "experiment,arch,seed,parameters,epochs,seconds,train_accuracy,test_accuracy" and len(rows) == 5
    assert "CoordConv - conv, paired by seed" in (out / "results.md").read_text()
    assert len(list((out / "tb").iterdir())) == 4
    assert (out / "measures.png").stat().st_size > 0  # test and train accuracy against epochs


def test_not_so_clevr_runs_in_worker_processes(tmp_path):
    """The workers send back the trained models, CoordConv layers included."""
    from rl_coordconv.commands import supervised as command

    out = tmp_path / "jobs2"
    assert (
        command.main(
            [
                "--experiment",
                "not-so-clevr",
                "--quick",
                "--task",
                "classification",
                "--split",
                "uniform",
                "--jobs",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = (out / "results.csv").read_text().splitlines()
    assert sorted(row.split(",")[2] for row in rows[1:]) == ["conv", "coordconv"], rows


def test_runs_in_parallel_give_the_results_of_runs_one_at_a_time_in_order(tmp_path, monkeypatch, capsys):
    from rl_coordconv.commands import supervised as command

    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)  # two workers of one thread each
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert command.main(["--experiment", "classification", "--quick", "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert command.main(["--experiment", "classification", "--quick", "--jobs", "2", "--out", str(tmp_path / "two")]) == 0

    def rows(folder):  # every column but the seconds
        return [line.split(",")[:5] + line.split(",")[6:] for line in (folder / "results.csv").read_text().splitlines()]

    assert [row[1:3] for row in rows(tmp_path / "two")[1:]] == [
        ["conv", "0"],
        ["coordconv", "0"],
        ["conv", "1"],
        ["coordconv", "1"],
    ]
    assert rows(tmp_path / "two") == rows(tmp_path / "one")
    assert len(list((tmp_path / "two" / "tb").glob("classification-*/events.out.tfevents.*"))) == 4
    capsys.readouterr()
    assert command.main(["--experiment", "classification", "--jobs", "0"]) == 2
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err


def _slow_first(config, progress, writer):  # a train function for the spawned workers (picklable by name)
    time.sleep(1.0 if config == 0 else 0.0)
    return config, torch.get_num_threads()


def test_train_runs_keep_the_configs_order_and_give_each_worker_its_share_of_threads(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 6)  # 2 jobs -> 3 threads each
    reported = {}
    results = parallel.train_runs(_slow_first, [0, 1, 2, 3], [tmp_path / str(i) for i in range(4)], 2, reported.__setitem__)
    assert results == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert reported == {0: (0, 3), 1: (1, 3), 2: (2, 3), 3: (3, 3)}  # each result reported with its config's index
    reported.clear()
    one_at_a_time = parallel.train_runs(
        _slow_first, [5, 6, 7], [tmp_path / f"one{i}" for i in range(3)], 1, reported.__setitem__
    )
    assert reported == dict(enumerate(one_at_a_time)) and [config for config, _ in one_at_a_time] == [5, 6, 7]
    assert registry.jobs("classification", SimpleNamespace(jobs=2)) == 2
    assert registry.jobs("detection", SimpleNamespace(jobs=1)) == 1
    assert registry.jobs("detection", SimpleNamespace(jobs=None)) == 2


def test_no_progress_hides_the_bars_of_runs_one_at_a_time_and_of_runs_at_once(tmp_path, monkeypatch, capsys):
    import dataclasses

    from rl_coordconv.commands import supervised as command

    shown = []

    def train(config, progress, writer):
        shown.append(progress)
        return train_generative(config, progress=progress, writer=writer)

    monkeypatch.setitem(registry.EXPERIMENTS, "vae", dataclasses.replace(registry.EXPERIMENTS["vae"], train=train))
    assert command.main(["--experiment", "vae", "--quick", "--no-progress", "--out", str(tmp_path / "hidden")]) == 0
    assert shown == [False, False]
    assert command.main(["--experiment", "vae", "--quick", "--out", str(tmp_path / "shown")]) == 0
    assert shown == [False, False, True, True]

    capsys.readouterr()
    parallel.train_runs(_slow_first, [1, 2], [tmp_path / "a1", tmp_path / "a2"], 2, lambda *_: None, progress=False)
    assert "at a time" not in capsys.readouterr().err
    parallel.train_runs(_slow_first, [1, 2], [tmp_path / "b1", tmp_path / "b2"], 2, lambda *_: None)
    assert "runs, 2 at a time" in capsys.readouterr().err


# ------------------------------------------------------------------ an interrupted command resumed


def _vae_trained_by(monkeypatch, trained: list[str], interrupt_at: str | None = None) -> None:
    """Make the VAE experiment record the arch of each run it trains, and raise KeyboardInterrupt
    as the run of arch ``interrupt_at`` starts. Its results hold the config as run, the default
    learning rate filled in (as Not-so-Clevr's do), which is not the config planned."""
    import dataclasses

    def train(config, **kwargs):
        if config.arch == interrupt_at:
            raise KeyboardInterrupt
        trained.append(config.arch)
        result = train_generative(config, **kwargs)
        return dataclasses.replace(result, config=dataclasses.replace(config, learning_rate=1e-3))

    monkeypatch.setitem(registry.EXPERIMENTS, "vae", dataclasses.replace(registry.EXPERIMENTS["vae"], train=train))


def test_an_interrupted_command_resumes_training_only_the_runs_that_did_not_finish(tmp_path, monkeypatch, capsys):
    from rl_coordconv.commands import supervised as command

    out, trained = tmp_path / "vae", []
    argv = ["--experiment", "vae", "--quick", "--out", str(out)]
    _vae_trained_by(monkeypatch, trained, interrupt_at="coordconv")
    assert command.main(argv) == 130
    assert "--resume" in capsys.readouterr().err
    assert trained == ["conv"] and sorted(path.name for path in (out / "finished").iterdir()) == ["vae-conv-seed0.pt"]
    finished = torch.load(out / "finished" / "vae-conv-seed0.pt", weights_only=False)
    assert finished["config"] == GenerativeConfig("vae", "conv", seed=0, **registry.QUICK_GENERATIVE)  # as planned
    conv_first = finished["result"]
    stale = out / "tb" / "vae-coordconv-seed0" / "events.out.tfevents.stale"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("events of the interrupted attempt")

    trained.clear()
    _vae_trained_by(monkeypatch, trained)
    assert command.main([*argv, "--resume"]) == 0
    assert trained == ["coordconv"]  # the conv run was read, not trained again
    assert not stale.exists() and list(stale.parent.glob("events.out.tfevents.*"))
    rows = (out / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    conv_row = dict(zip(header, next(row for row in rows if row.split(",")[1] == "conv").split(",")))
    assert float(conv_row["parameters"]) == conv_first.parameters
    for name, value in conv_first.metrics.items():
        assert float(conv_row[name]) == pytest.approx(value, rel=1e-3, abs=1e-4, nan_ok=True)  # the CSV keeps 4 digits
    assert {"vae-conv-seed0.pt", "vae-coordconv-seed0.pt"} == {path.name for path in (out / "finished").iterdir()}


def test_a_resume_refuses_other_settings_and_folders_that_do_not_hold_the_command(tmp_path, monkeypatch, capsys):
    from rl_coordconv.commands import supervised as command

    out, trained = tmp_path / "vae", []
    _vae_trained_by(monkeypatch, trained, interrupt_at="coordconv")
    assert command.main(["--experiment", "vae", "--quick", "--out", str(out)]) == 130
    trained.clear()
    _vae_trained_by(monkeypatch, trained)
    capsys.readouterr()
    assert command.main(["--experiment", "vae", "--quick", "--epochs", "2", "--out", str(out), "--resume"]) == 2
    assert "other settings than the finished run vae-conv-seed0 (epochs 1 -> 2" in capsys.readouterr().err
    assert command.main(["--experiment", "vae", "--quick", "--out", str(out)]) == 2
    assert "is not empty; choose another --out, or continue its runs with --resume" in capsys.readouterr().err
    assert command.main(["--experiment", "vae", "--quick", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume: " in capsys.readouterr().err
    assert command.main(["--experiment", "vae", "--quick", "--resume"]) == 2
    assert "--resume needs the --out" in capsys.readouterr().err
    done = tmp_path / "done"
    done.mkdir()
    (done / "results.md").write_text("a finished command's report")
    assert command.main(["--experiment", "vae", "--quick", "--out", str(done), "--resume"]) == 2
    assert f"nothing to resume: {done} holds the results.md of a command that finished" in capsys.readouterr().err
    assert trained == []
