"""The supervised experiments' measures against epochs and their stopping rule: the plateau rule
on made-up histories, the VAE's and GAN's measures at the stated epochs (in the history and in
TensorBoard), the figures, the VAE's loss written out, and the GAN's stabilisers."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from rl_coordconv.analysis.runs import read_scalars
from rl_coordconv.supervised import experiments, shapes
from rl_coordconv.supervised.curves import seed_curve
from rl_coordconv.supervised.generative import (
    VAE,
    Decoder,
    GenerativeConfig,
    _gan_step,
    average_of,
    build_discriminator,
    measure_inputs,
    train_generative,
)
from rl_coordconv.supervised.models import count_parameters
from rl_coordconv.supervised.plateau import Plateau, history_series, plateau, plateau_section, same_budget

# ------------------------------------------------------------------------------------- the plateau rule

EPOCHS = list(range(1, 11))  # a measure after each of 10 epochs: the last fifth is epochs 8-10


def test_a_run_whose_measure_moved_less_than_the_tolerance_in_its_last_fifth_met_the_rule():
    values = [5.0, 4.0, 3.0, 2.5, 2.2, 2.1, 2.05, 2.02, 2.01, 2.0]
    verdict = plateau(EPOCHS, values, budget=10, tolerance=0.02)
    # Epochs 8-10 hold 2.02, 2.01, 2.0: range 0.02, over the last value 2.0: 1 %.
    assert verdict == Plateau(True, pytest.approx(0.01), (8.0, 10.0))
    assert verdict.cell() == "met (1.0 %)"


def test_a_run_still_moving_in_its_last_fifth_did_not_meet_it_whichever_way_it_moves():
    falling = [5.0, 4.0, 3.5, 3.0, 2.8, 2.6, 2.4, 2.2, 2.1, 2.0]  # 2.2 .. 2.0: 10 %
    assert plateau(EPOCHS, falling, budget=10, tolerance=0.02) == Plateau(False, pytest.approx(0.1), (8.0, 10.0))
    rising = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.76, 0.78, 0.8]  # an IoU: 0.76 .. 0.8, 5 % of 0.8
    verdict = plateau(EPOCHS, rising, budget=10, tolerance=0.02)
    assert (verdict.met, verdict.change) == (False, pytest.approx(0.05))
    assert verdict.cell() == "not met (5.0 %)"
    assert plateau(EPOCHS, rising, budget=10, tolerance=0.06).met  # the same run under a looser rule


def test_a_seed_short_of_its_budget_or_measured_too_rarely_cannot_tell():
    short = plateau(EPOCHS[:7], [3.0, 2.5, 2.2, 2.1, 2.05, 2.02, 2.01], budget=10)
    assert (short.met, short.why) == (None, "stopped at epoch 7 of 10") and math.isnan(short.change)
    assert short.cell() == "cannot tell: stopped at epoch 7 of 10"
    rare = plateau([5, 10], [2.1, 2.0], budget=10)
    assert (rare.met, rare.why) == (None, "1 measure in epochs 8-10; measure more often")
    assert plateau([2, 4, 6, 8, 10], [1.0, 1.0, 1.0, 1.0, 0.0], budget=10).met is False  # 1 -> 0: no plateau
    assert plateau([8, 10], [0.0, 0.0], budget=10).met is True  # no change at all


def test_the_report_gives_every_seed_its_verdict_and_counts_the_runs_that_met_it():
    steady, moving = [2.0] * 10, [3.0 - 0.1 * k for k in range(10)]
    verdicts = {
        ("conv", 0): plateau(EPOCHS, steady, 10),
        ("coordconv", 0): plateau(EPOCHS, steady, 10),
        ("conv", 1): plateau(EPOCHS, moving, 10),  # 2.3, 2.2, 2.1: 0.2 / 2.1
        ("coordconv", 1): plateau(EPOCHS[:9], steady[:9], 10),  # one seed short
    }
    section = plateau_section(verdicts, "held-out negative ELBO", budget=10, tolerance=0.02)
    assert section.splitlines() == [
        "Plateau rule: a run met it when its held-out negative ELBO changed by less than 2 % of its last value (the "
        "range of the measures taken in epochs 8-10, the last 20 % of the 10-epoch budget both models got).",
        "",
        "| seed | conv | coordconv |",
        "|---|---|---|",
        "| 0 | met (0.0 %) | met (0.0 %) |",
        "| 1 | not met (9.5 %) | cannot tell: stopped at epoch 9 of 10 |",
        "",
        "Met by 2 of 4 runs; not by conv seed 1 (not met), coordconv seed 1 (cannot tell).",
    ]


def test_the_rule_and_the_budget_refuse_what_they_cannot_state():
    with pytest.raises(ValueError, match=r"plateau tolerance must be a fraction > 0 \(0.02 is 2 %\), got 0"):
        plateau(EPOCHS, [1.0] * 10, 10, tolerance=0)
    with pytest.raises(ValueError, match="epochs and values must pair up, got 10 epochs and 9 values"):
        plateau(EPOCHS, [1.0] * 9, 10)
    with pytest.raises(ValueError, match=r"must share one epoch budget, got \[5, 6\]"):
        same_budget([SimpleNamespace(epochs=5), SimpleNamespace(epochs=6)])
    assert same_budget([SimpleNamespace(epochs=5)] * 2) == 5
    history = [{"epoch": 1.0, "train/loss": 3.0}, {"epoch": 2.0, "test/x": 0.5}, {"epoch": 3.0, "test/x": 0.25}]
    assert history_series(history, "test/x") == ([2.0, 3.0], [0.5, 0.25])


def test_the_curve_is_the_mean_over_seeds_with_its_t_interval_at_each_epoch():
    seeds = [
        [{"epoch": 1.0, "test/x": 1.0}, {"epoch": 2.0, "test/x": 2.0}],
        [{"epoch": 1.0, "test/x": 3.0}, {"epoch": 2.0, "test/x": float("nan")}],  # no objects: no value
    ]
    epochs, mean, low, high = seed_curve(seeds, "test/x")
    half = 12.706204736174707 * math.sqrt(2) / math.sqrt(2)  # t(0.975, 1 dof) * std(1, 3) / sqrt(2)
    np.testing.assert_allclose(epochs, [1.0, 2.0])
    np.testing.assert_allclose(mean, [2.0, 2.0])
    np.testing.assert_allclose(low, [2.0 - half, 2.0])  # epoch 2: one seed, no interval
    np.testing.assert_allclose(high, [2.0 + half, 2.0])


# ------------------------------------------------------------------------ the measures against epochs

TINY = dict(train_scenes=128, test_scenes=32, batch_size=64, samples=16, interpolations=2, steps=4)  # 2 steps an epoch
VAE_MEASURES = [
    "samples_histogram_distance",
    "samples_cells_reached",
    "objects_per_sample",
    "interpolation_mean_jump",
    "interpolation_broken_steps",
    "test_negative_elbo",
    "test_pixel_mse",
    "test_object_miscount",
]


def test_the_default_measure_interval_is_a_tenth_of_the_budget():
    assert GenerativeConfig("vae").measure_every == 10  # 100 epochs
    assert GenerativeConfig("gan").measure_every == 12  # 120 epochs
    assert GenerativeConfig("gan", epochs=25).measure_every == 2
    assert GenerativeConfig("gan", epochs=5).measure_every == 1
    assert GenerativeConfig("gan", epochs=200, measure_every=5).measure_every == 5


def test_the_measures_are_logged_to_tensorboard_at_the_stated_epochs_and_the_last(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    config = GenerativeConfig("vae", "coordconv", epochs=5, measure_every=2, **TINY)
    with SummaryWriter(str(tmp_path)) as writer:
        result = train_generative(config, progress=False, writer=writer)
    scalars = read_scalars(tmp_path)
    measured = [record for record in result.history if "test/test_negative_elbo" in record]
    assert [record["epoch"] for record in measured] == [2.0, 4.0, 5.0]
    for name in VAE_MEASURES:
        series = scalars[f"test/{name}"]
        assert series.steps.tolist() == [4, 8, 10], name  # epochs 2, 4, 5 of 2 steps each
        np.testing.assert_allclose(series.values, [record[f"test/{name}"] for record in measured], rtol=1e-6)
    assert result.metrics == {name: measured[-1][f"test/{name}"] for name in VAE_MEASURES}


def test_measuring_leaves_the_training_as_it_was():
    often, rarely = (
        train_generative(GenerativeConfig("vae", "conv", epochs=3, measure_every=every, **TINY), progress=False)
        for every in (1, 3)
    )
    assert [record["train/loss"] for record in often.history] == [record["train/loss"] for record in rarely.history]
    np.testing.assert_equal(often.metrics, rarely.metrics)


def test_the_gan_measures_the_same_fixed_codes_each_time():
    first = train_generative(GenerativeConfig("gan", "conv", epochs=2, measure_every=1, seed=1, **TINY), progress=False)
    again = train_generative(GenerativeConfig("gan", "conv", epochs=2, measure_every=2, seed=1, **TINY), progress=False)
    assert torch.equal(first.samples, again.samples) and torch.equal(first.interpolation, again.interpolation)


@pytest.mark.parametrize("experiment", ["vae", "gan"])
def test_a_quick_run_writes_the_measures_figure_and_a_verdict_per_seed(experiment, tmp_path):
    from rl_coordconv.commands import supervised as command

    out = tmp_path / experiment
    assert command.main(["--experiment", experiment, "--quick", "--seeds", "2", "--out", str(out)]) == 0
    assert (out / "measures.png").stat().st_size > 0
    report = (out / "results.md").read_text()
    # --quick trains 1 epoch, measured once: too few measures for the rule, and the report says so.
    why = "cannot tell: 1 measure in epochs 0.8-1; measure more often"
    assert f"| 0 | {why} | {why} |" in report and f"| 1 | {why} | {why} |" in report
    assert "Met by 0 of 4 runs" in report


def test_the_classification_control_checks_both_accuracies_after_every_epoch(tmp_path):
    from rl_coordconv.supervised import classification, classification_report

    results = [
        classification.train_classifier(classification.ClassificationConfig(arch, seed=0, epochs=2), progress=False)
        for arch in ("conv", "coordconv")
    ]
    for result in results:
        assert [record["epoch"] for record in result.history] == [1.0, 2.0]
        assert result.history[-1]["test/accuracy"] == result.test_accuracy
        assert result.history[-1]["train/accuracy"] == result.train_accuracy
    assert classification_report.save_measures(results, tmp_path / "m.png").stat().st_size > 0


# ------------------------------------------------------------------------------------ the VAE's loss


def test_the_vae_loss_is_a_bernoulli_reconstruction_plus_the_gaussian_kl_for_a_fixed_noise_draw():
    torch.manual_seed(0)
    model = VAE("conv", latent=4, width=4)
    with torch.no_grad():  # log variances near -3, so that a standard deviation (0.22) and a variance (0.05) differ
        model.encoder.net[-1].bias[4:] = -3.0
    images = shapes.generate(3, seed=5).images
    torch.manual_seed(11)
    loss = model.loss(images)

    with torch.no_grad():
        out = model.encoder(images)
        mean, log_variance = out[:, :4], out[:, 4:]
        torch.manual_seed(11)
        noise = torch.randn(3, 4)

        def expected(scale):
            p = torch.sigmoid(model.decoder(mean + scale * noise))
            reconstruction = -(images * torch.log(p) + (1 - images) * torch.log(1 - p)).sum()
            kl = 0.5 * (log_variance.exp() + mean**2 - 1 - log_variance).sum()
            return ((reconstruction + kl) / 3).item()

        standard_deviation, variance = log_variance.exp().sqrt(), log_variance.exp()
    assert loss.item() == pytest.approx(expected(standard_deviation), rel=1e-5)
    assert expected(variance) != pytest.approx(expected(standard_deviation), rel=1e-5)  # the test tells them apart


# ------------------------------------------------------------------------------- the GAN's stabilisers


def _gan_pair(latent: int = 4):
    torch.manual_seed(0)
    return Decoder("conv", latent, 4, batch_norm=True), nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1))


def test_the_r1_penalty_is_half_gamma_times_the_squared_input_gradient_on_real_images():
    generator, discriminator = _gan_pair()
    weight = discriminator[1].weight.detach().clone()  # a linear discriminator's input gradient is its weight
    step = _gan_step(
        generator, discriminator, shapes.generate(8, seed=0).images, GenerativeConfig("gan", latent=4, r1_penalty=10.0)
    )
    losses = step(torch.arange(8))
    assert losses["r1_penalty"].item() == pytest.approx(10.0 / 2 * weight.pow(2).sum().item(), rel=1e-5)
    plain = _gan_step(*_gan_pair(), shapes.generate(8, seed=0).images, GenerativeConfig("gan", latent=4))(torch.arange(8))
    assert "r1_penalty" not in plain
    assert losses["discriminator_loss"].item() == pytest.approx(
        plain["discriminator_loss"].item() + losses["r1_penalty"].item(), rel=1e-5
    )


def test_with_two_discriminator_steps_the_generator_updates_on_every_second_batch():
    generator, discriminator = _gan_pair()
    step = _gan_step(
        generator, discriminator, shapes.generate(8, seed=0).images, GenerativeConfig("gan", latent=4, discriminator_steps=2)
    )
    weights = [p.detach().clone() for p in generator.parameters()]
    changed = []
    for _ in range(4):
        losses = step(torch.arange(8))
        changed.append(any(not torch.equal(p, w) for p, w in zip(generator.parameters(), weights)))
        weights = [p.detach().clone() for p in generator.parameters()]
        assert ("generator_loss" in losses) == changed[-1]
    assert changed == [False, True, False, True]


def test_each_network_gets_its_own_learning_rate(monkeypatch):
    generator, discriminator = _gan_pair()
    rates, adam = {}, torch.optim.Adam

    def spy(parameters, lr, **kwargs):
        parameters = list(parameters)
        rates["generator" if parameters[0] is next(generator.parameters()) else "discriminator"] = lr
        return adam(parameters, lr=lr, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", spy)
    images = shapes.generate(8, seed=0).images
    _gan_step(
        generator,
        discriminator,
        images,
        GenerativeConfig("gan", latent=4, learning_rate=1e-4, discriminator_learning_rate=4e-4),
    )
    assert rates == {"generator": 1e-4, "discriminator": 4e-4}
    _gan_step(generator, discriminator, images, GenerativeConfig("gan", latent=4))
    assert rates == {"generator": 2e-4, "discriminator": 2e-4}  # today's DCGAN: one rate for both


# The rate of batch k of T = 2 epochs x 2 batches: rate * (1 + cos(pi k / T)) / 2, k = 0..3.
COSINE_OF_FOUR_BATCHES = [1.0, 0.8535533905932737, 0.5, 0.14644660940672624]


def test_the_vae_learning_rate_decays_along_a_half_cosine_batch_by_batch():
    from rl_coordconv.supervised.generative import _vae_step

    torch.manual_seed(0)
    images = shapes.generate(8, seed=0).images
    step = _vae_step(
        VAE("conv", latent=4, width=4), images, GenerativeConfig("vae", epochs=2, batch_size=4, learning_rate=5e-4)
    )
    rates = [step(torch.arange(4))["learning_rate"] for _ in range(4)]
    assert rates == pytest.approx([5e-4 * factor for factor in COSINE_OF_FOUR_BATCHES], rel=1e-9)


def test_the_decay_counts_the_short_last_batch_of_each_epoch():
    from rl_coordconv.supervised.generative import _vae_step

    torch.manual_seed(0)
    images = shapes.generate(10, seed=0).images  # batches of 4, 4 and 2: 3 per epoch, T = 6 over 2 epochs
    config = GenerativeConfig("vae", epochs=2, batch_size=4, learning_rate=1e-3)
    step = _vae_step(VAE("conv", latent=4, width=4), images, config)
    rates = [step(torch.arange(4))["learning_rate"] for _ in range(7)]
    # 1e-3 * (1 + cos(pi k / 6)) / 2 for k = 0..5, then 0 at the end of the budget
    expected = [1e-3, 0.9330127018922194e-3, 0.75e-3, 0.5e-3, 0.25e-3, 0.0669872981077807e-3, 0.0]
    assert rates == pytest.approx(expected, abs=1e-12)


def test_both_gan_learning_rates_decay_along_a_half_cosine_also_on_the_generators_resting_batches(monkeypatch):
    optimizers, adam = [], torch.optim.Adam

    def keep(parameters, **kwargs):
        optimizers.append(adam(parameters, **kwargs))
        return optimizers[-1]

    monkeypatch.setattr(torch.optim, "Adam", keep)
    config = GenerativeConfig(
        "gan", latent=4, epochs=2, batch_size=4, learning_rate=1e-4, discriminator_learning_rate=4e-4, discriminator_steps=2
    )
    step = _gan_step(*_gan_pair(), shapes.generate(8, seed=0).images, config)
    generator_rates, discriminator_rates = [], []
    for _ in range(4):
        generator_rates.append(step(torch.arange(4))["learning_rate"])
        discriminator_rates.append(optimizers[1].param_groups[0]["lr"])
    assert generator_rates == pytest.approx([1e-4 * factor for factor in COSINE_OF_FOUR_BATCHES], rel=1e-9)
    # read after each batch: the rate the next batch trains at, 0 after the last
    assert discriminator_rates == pytest.approx([4e-4 * factor for factor in [*COSINE_OF_FOUR_BATCHES[1:], 0.0]], abs=1e-12)


def test_the_discriminator_has_the_width_and_normalization_asked_for():
    narrow = build_discriminator(GenerativeConfig("gan", "conv", discriminator_width=8))
    # 4x4 convs 3->8 (392), 8->16 (2,064), 16->16 (4,112), linear 16 * 16 -> 1 (257).
    assert count_parameters(narrow) == 392 + 2_064 + 4_112 + 257
    weighted = [m for m in narrow.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(nn.utils.parametrize.is_parametrized(m, "weight") for m in weighted)
    plain = build_discriminator(GenerativeConfig("gan", "coordconv", spectral_norm=False))
    assert not any(nn.utils.parametrize.is_parametrized(m) for m in plain.modules())


def test_the_gan_settings_are_checked_and_the_vae_refuses_them():
    with pytest.raises(ValueError, match="discriminator_steps must be >= 1, got 0"):
        GenerativeConfig("gan", discriminator_steps=0).validate()
    with pytest.raises(ValueError, match="discriminator_learning_rate must be > 0, got -0.1"):
        GenerativeConfig("gan", discriminator_learning_rate=-0.1).validate()
    with pytest.raises(ValueError, match=r"r1_penalty must be >= 0 \(0: none\), got -1.0"):
        GenerativeConfig("gan", r1_penalty=-1.0).validate()
    with pytest.raises(ValueError, match="measure_every must be >= 1, got 0"):
        GenerativeConfig("vae", measure_every=0).validate()
    with pytest.raises(ValueError, match="spectral_norm applies to experiment 'gan' only, got False for 'vae'"):
        GenerativeConfig("vae", spectral_norm=False).validate()
    with pytest.raises(ValueError, match=r"generator_average must be in \[0, 1\) \(0: none\), got 1.0"):
        GenerativeConfig("gan", generator_average=1.0).validate()
    with pytest.raises(ValueError, match="generator_average applies to experiment 'gan' only, got 0.99 for 'vae'"):
        GenerativeConfig("vae", generator_average=0.99).validate()


def _float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The weights and the batch-norm running statistics (not the integer batch counts)."""
    return {name: value.detach().clone() for name, value in module.state_dict().items() if value.is_floating_point()}


def test_the_generator_average_follows_each_generator_update_and_skips_the_discriminator_only_batches():
    generator, discriminator = _gan_pair()
    config = GenerativeConfig("gan", latent=4, discriminator_steps=2, generator_average=0.75)
    average = average_of(generator, config.generator_average)
    step = _gan_step(generator, discriminator, shapes.generate(8, seed=0).images, config, average)
    expected = None
    for _ in range(6):  # generator updates on batches 2, 4 and 6
        if "generator_loss" not in step(torch.arange(8)):
            continue
        current = _float_state(generator)
        if expected is None:  # the first update copies
            expected = current
        else:
            expected = {name: 0.75 * expected[name] + 0.25 * current[name] for name in current}
    averaged = _float_state(average.module)
    assert set(averaged) == set(expected) and any("running_mean" in name for name in expected)
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value, rtol=1e-6, atol=1e-7)
    assert not torch.equal(averaged["project.weight"], _float_state(generator)["project.weight"])
    assert average_of(generator, 0.0) is None


def test_the_gan_measures_and_samples_read_the_generator_average(monkeypatch):
    from rl_coordconv.supervised import generative

    made = []

    def recorded(generator, decay):
        made.append((generator, average_of(generator, decay)))
        return made[-1][1]

    monkeypatch.setattr(generative, "average_of", recorded)
    config = GenerativeConfig("gan", "conv", **experiments.QUICK_GENERATIVE, generator_average=0.5)
    result = train_generative(config, progress=False)
    ((generator, average),) = made
    train_set = shapes.generate(config.train_scenes, seed=config.seed)
    codes = measure_inputs(config, train_set, None, torch.device("cpu")).codes[:64]
    generator.eval()
    with torch.no_grad():
        torch.testing.assert_close(result.samples, torch.sigmoid(average.module(codes)))
        assert not torch.allclose(result.samples, torch.sigmoid(generator(codes)), atol=1e-3)


def test_the_command_gives_both_gan_models_the_settings_it_is_given():
    args = SimpleNamespace(
        quick=False,
        seeds=2,
        seed=0,
        epochs=None,
        learning_rate=1e-4,
        batch_size=None,
        device="cpu",
        measure_every=4,
        discriminator_learning_rate=4e-4,
        discriminator_width=32,
        discriminator_steps=2,
        spectral_norm=False,
        r1_penalty=1.0,
        generator_average=0.999,
    )
    configs = experiments.plan("gan", args)
    assert [(c.arch, c.seed) for c in configs] == [("conv", 0), ("coordconv", 0), ("conv", 1), ("coordconv", 1)]
    assert {(c.epochs, c.learning_rate, c.measure_every, c.discriminator_learning_rate) for c in configs} == {
        (120, 1e-4, 4, 4e-4)
    }
    assert {(c.discriminator_width, c.discriminator_steps, c.spectral_norm, c.r1_penalty) for c in configs} == {
        (32, 2, False, 1.0)
    }
    assert {c.generator_average for c in configs} == {0.999}
    vae = experiments.plan("vae", args)  # the VAE takes the measure interval, not the GAN's settings
    assert {(c.measure_every, c.discriminator_steps, c.spectral_norm, c.generator_average) for c in vae} == {(4, 1, True, 0.0)}


def test_the_report_states_the_settings_both_models_got():
    from rl_coordconv.supervised.generative import GenerativeResult
    from rl_coordconv.supervised.generative_report import settings_line

    def line(config):
        return settings_line(GenerativeResult(config, 1, 1.0, {}, torch.zeros(1, 3, 32, 32), torch.zeros(1, 2, 3, 32, 32)))

    gan = GenerativeConfig(
        "gan", epochs=200, learning_rate=1e-4, discriminator_learning_rate=4e-4, discriminator_steps=2, r1_penalty=0.5
    )
    assert line(gan) == (
        "Settings: 200 epochs of 4,000 scenes, batch 64, Adam learning rate 0.0001 decayed to 0 along a half cosine, "
        "measured every 20 epochs (and after "
        "the last) on 1,000 samples from fixed codes, 16 fixed interpolations of 16 frames; the discriminator: learning "
        "rate 0.0004, width 16 (the generator's 16), 2 update(s) per generator update, spectral norm on, R1 penalty 0.5."
    )
    assert line(GenerativeConfig("vae")).startswith(
        "Settings: 100 epochs of 4,000 scenes, batch 64, Adam learning rate 0.001 decayed to 0 along a half cosine, "
    )
    assert "discriminator" not in line(GenerativeConfig("vae"))
    averaged = GenerativeConfig("gan", generator_average=0.999)
    assert line(averaged).endswith(
        "R1 penalty 0; the measures and samples from an exponential moving average of the generator's weights and "
        "batch-norm statistics (decay 0.999)."
    )


def test_a_change_of_exactly_the_tolerance_is_not_a_plateau():
    # range 0.125 over the last value 4.0: exactly 1/32 in binary, which "less than 1/32" does not admit
    assert plateau([8, 9, 10], [4.125, 4.0625, 4.0], budget=10, tolerance=1 / 32).met is False
    assert plateau([8, 9, 10], [4.12, 4.0625, 4.0], budget=10, tolerance=1 / 32).met is True


def test_each_experiment_plans_its_stated_seeds_and_jobs():
    planned = {name: (e.seeds, e.quick_seeds, e.jobs) for name, e in experiments.EXPERIMENTS.items()}
    assert planned == {
        "not-so-clevr": (1, 1, 1),
        "vae": (3, 1, 1),
        "gan": (3, 1, 1),
        "classification": (5, 2, 1),
        "detection": (5, 1, 2),
    }
