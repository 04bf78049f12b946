"""The paper's generative experiments at laptop scale: a VAE and a GAN on Sort-of-CLEVR scenes,
conv against CoordConv, judged by where their objects appear and how they move along latent
interpolations.

Both models are DCGAN-shaped and share their two halves: an encoder (three stride-2 4x4
convolutions, 32 -> 4 pixels, then a linear layer; the VAE's encoder and the GAN's
discriminator, spectrally normalized there) and a decoder (a linear layer to ``2 width x 4 x 4``,
then three nearest upsamplings each followed by a 3x3 convolution, batch-normalized in the GAN's
generator; the VAE's decoder and the GAN's generator). The CoordConv models replace every
convolution of both halves with :class:`~rl_coordconv.layers.CoordConv2d`, as the paper puts
CoordConv in both the generator and the discriminator; the conv models have none.

The VAE's interpolations run between the posterior means of two new scenes holding the same
object at two places, so the object should move and nothing else change; the GAN's between
random latent codes."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from rl_coordconv.supervised.archs import ARCHS, conv_layer
from rl_coordconv.supervised.fitting import batches_per_epoch, fit, minimize
from rl_coordconv.supervised.models import count_parameters
from rl_coordconv.supervised.objects import find_objects, interpolation_measures, object_count_error, position_coverage
from rl_coordconv.supervised.settings import validate_settings
from rl_coordconv.supervised.shapes import SIZE, Scenes, generate, moving_object_pairs

EXPERIMENTS = ("vae", "gan")
# Past where the pilots' measures stopped moving at a constant rate (results/supervised-pilots/:
# the VAE's from about epoch 60, the GAN's still falling at 80), with the rate decayed to 0 over them.
DEFAULT_EPOCHS = {"vae": 100, "gan": 120}
DEFAULT_LEARNING_RATES = {"vae": 1e-3, "gan": 2e-4}
# GenerativeConfig's settings of the GAN alone; their defaults are the committed runs' DCGAN: equal
# learning rates, a discriminator as wide as the generator, one update each per batch, spectral
# norm, no penalty, no generator average.
GAN_SETTINGS = (
    "discriminator_learning_rate",
    "discriminator_width",
    "discriminator_steps",
    "spectral_norm",
    "r1_penalty",
    "generator_average",
)
MEASURE_SEED_OFFSET = 30_000  # the fixed codes of the measures: seed + this (test scenes 10_000, VAE pairs 20_000)


class Encoder(nn.Module):
    """``(B, 3, 32, 32)`` images in [0, 1] -> ``(B, outputs)``."""

    def __init__(self, arch: str, outputs: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv_layer(arch, 3, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),  # 16 x 16
            conv_layer(arch, width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),  # 8 x 8
            conv_layer(arch, 2 * width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),  # 4 x 4
            nn.Flatten(),
            nn.Linear(2 * width * 16, outputs),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class Decoder(nn.Module):
    """``(B, latent)`` codes -> ``(B, 3, 32, 32)`` logits (``sigmoid`` gives images)."""

    def __init__(self, arch: str, latent: int, width: int = 16, batch_norm: bool = False) -> None:
        super().__init__()
        self.project = nn.Linear(latent, 2 * width * 16)
        self.width = width

        def block(in_channels: int, out_channels: int) -> list[nn.Module]:
            norm = [nn.BatchNorm2d(out_channels)] if batch_norm else []
            return [nn.Upsample(scale_factor=2), conv_layer(arch, in_channels, out_channels, 3, padding=1), *norm, nn.ReLU()]

        self.net = nn.Sequential(
            *block(2 * width, 2 * width),
            *block(2 * width, width),
            *block(width, width),  # 8, 16, 32 pixels
            conv_layer(arch, width, 3, 3, padding=1),
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(F.relu(self.project(codes)).view(-1, 2 * self.width, 4, 4))


class VAE(nn.Module):
    """A Gaussian VAE with a Bernoulli decoder over pixels (``latent`` dimensions)."""

    def __init__(self, arch: str, latent: int = 16, width: int = 16) -> None:
        super().__init__()
        self.latent = latent
        self.encoder, self.decoder = Encoder(arch, 2 * latent, width), Decoder(arch, latent, width)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log variance)`` of the posterior, ``(B, latent)`` each."""
        return self.encoder(images).chunk(2, dim=1)

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """The negative ELBO per image: pixel cross-entropy summed over the image, plus the KL term."""
        mean, log_variance = self.encode(images)
        codes = mean + torch.randn_like(mean) * (0.5 * log_variance).exp()
        reconstruction = F.binary_cross_entropy_with_logits(self.decoder(codes), images, reduction="sum")
        kl = -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp()).sum()
        return (reconstruction + kl) / len(images)


@dataclass
class GenerativeConfig:
    """One model's training; the default budgets are where the measures reached their plateau (see DEFAULT_EPOCHS).

    The GAN's stabilisers (``discriminator_*``, ``spectral_norm``, ``r1_penalty``) apply to both
    archs alike; their defaults are the DCGAN set-up of the committed runs, and the VAE refuses
    any other value."""

    experiment: str = "vae"
    arch: str = "coordconv"
    train_scenes: int = 4000
    test_scenes: int = 1000
    epochs: int | None = None  # VAE 100, GAN 120 (a GAN step costs about twice a VAE step)
    batch_size: int = 64
    latent: int = 16
    width: int = 16  # channels of the first encoder and last decoder convolutions (the others 2x)
    learning_rate: float | None = None  # VAE 1e-3, GAN 2e-4 (DCGAN's; the GAN's generator's)
    samples: int = 1000  # generated images for the position measures
    interpolations: int = 16
    steps: int = 16  # frames per interpolation
    measure_every: int | None = None  # epochs between measures (and the last epoch); None: a tenth of the budget, >= 1
    discriminator_learning_rate: float | None = None  # None: the generator's (two time-scale updates: a larger one)
    discriminator_width: int | None = None  # None: width
    discriminator_steps: int = 1  # discriminator updates per generator update (the generator rests between)
    spectral_norm: bool = True  # on every weight of the discriminator
    r1_penalty: float = 0.0  # gamma of the R1 penalty gamma / 2 E_real |grad_x D(x)|^2 (Mescheder et al. 2018)
    # Decay of an exponential moving average of the generator's weights and batch-norm statistics,
    # updated after each generator update; the measures and samples read the average. 0: none.
    generator_average: float = 0.0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.epochs is None:
            self.epochs = DEFAULT_EPOCHS.get(self.experiment, 1)
        if self.measure_every is None and isinstance(self.epochs, int):
            self.measure_every = max(1, self.epochs // 10)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting and what is accepted."""
        validate_settings(
            self,
            {"experiment": EXPERIMENTS, "arch": ARCHS},
            (
                "train_scenes",
                "test_scenes",
                "epochs",
                "batch_size",
                "latent",
                "width",
                "samples",
                "interpolations",
                "measure_every",
                "discriminator_width",
                "discriminator_steps",
            ),
        )
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2 frames per interpolation, got {self.steps!r}")
        if self.discriminator_learning_rate is not None and not self.discriminator_learning_rate > 0:
            raise ValueError(f"discriminator_learning_rate must be > 0, got {self.discriminator_learning_rate!r}")
        if not self.r1_penalty >= 0:
            raise ValueError(f"r1_penalty must be >= 0 (0: none), got {self.r1_penalty!r}")
        if not 0 <= self.generator_average < 1:
            raise ValueError(f"generator_average must be in [0, 1) (0: none), got {self.generator_average!r}")
        if self.experiment != "gan":
            defaults = {setting.name: setting.default for setting in fields(self)}
            for name in GAN_SETTINGS:
                if getattr(self, name) != defaults[name]:
                    raise ValueError(
                        f"{name} applies to experiment 'gan' only, got {getattr(self, name)!r} for {self.experiment!r}"
                    )


@dataclass
class GenerativeResult:
    config: GenerativeConfig
    parameters: int
    seconds: float  # training time
    metrics: dict[str, float]
    samples: torch.Tensor  # (64, 3, 32, 32) generated images, for the figure
    interpolation: torch.Tensor  # (interpolations, steps, 3, 32, 32)
    history: list[dict[str, float]] = field(default_factory=list)  # fit's records, one per epoch


def spectrally_normalized(discriminator: nn.Module) -> nn.Module:
    """``discriminator`` with every convolution and linear layer's weight spectrally normalized
    (Miyato et al. 2018): on these mostly black scenes a plain discriminator beats the generator
    within an epoch and its gradients then vanish."""
    for module in discriminator.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):  # CoordConv2d is an nn.Conv2d
            nn.utils.parametrizations.spectral_norm(module)
    return discriminator


def interpolate(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """``(N, steps, latent)`` codes on the straight lines from ``start`` to ``end`` (``(N, latent)``)."""
    weights = torch.linspace(0.0, 1.0, steps, device=start.device)[None, :, None]
    return start[:, None] * (1 - weights) + end[:, None] * weights


def _decode(decoder: Decoder, codes: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([torch.sigmoid(decoder(part)) for part in codes.split(batch)]).cpu()


def build_discriminator(config: GenerativeConfig) -> Encoder:
    """The GAN's discriminator, ``(B, 3, 32, 32)`` -> ``(B, 1)`` logits: ``discriminator_width``
    channels (``width`` when ``None``), spectrally normalized when ``spectral_norm``."""
    discriminator = Encoder(config.arch, 1, config.discriminator_width or config.width)
    return spectrally_normalized(discriminator) if config.spectral_norm else discriminator


@dataclass(frozen=True)
class MeasureInputs:
    """What every measure of one run is taken on, fixed before training so that the measures of
    successive epochs differ by the model alone.

    :ivar codes: ``(samples, latent)`` prior draws decoded into the samples.
    :ivar interpolations: how many; the GAN's run between the two ``(interpolations, latent)``
        codes of ``ends``, the VAE's (``ends`` ``None``) between the encodings, at each measure, of
        the scene pairs ``moving_object_pairs(interpolations, pairs_seed)``.
    :ivar data_centres: ``(M, 2)`` object centres of the training scenes, the samples' reference.
    :ivar test_set: the VAE's held-out scenes (``None`` for the GAN).
    """

    codes: torch.Tensor
    interpolations: int
    ends: tuple[torch.Tensor, torch.Tensor] | None
    pairs_seed: int
    data_centres: np.ndarray
    test_set: Scenes | None


def measure_inputs(config: GenerativeConfig, train_set: Scenes, test_set: Scenes, device: torch.device) -> MeasureInputs:
    """The fixed inputs of ``config``'s measures, the codes drawn from a generator of their own
    (seeded from ``config.seed``): neither the batch order nor the training noise depends on them."""
    draws = torch.Generator().manual_seed(MEASURE_SEED_OFFSET + config.seed)
    codes = torch.randn(config.samples, config.latent, generator=draws).to(device)
    if config.experiment == "vae":
        return MeasureInputs(codes, config.interpolations, None, 20_000 + config.seed, train_set.centres(), test_set)
    ends = tuple(torch.randn(config.interpolations, config.latent, generator=draws).to(device) for _ in range(2))
    return MeasureInputs(codes, config.interpolations, ends, 20_000 + config.seed, train_set.centres(), None)


def measure(
    model: nn.Module, decoder: Decoder, inputs: MeasureInputs, steps: int, device: torch.device
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """The measures of the model as it is now (put in eval mode), with its samples ``(samples, 3,
    32, 32)`` and interpolation frames ``(interpolations, steps, 3, 32, 32)``; the global random
    state is left as it was (the VAE's held-out ELBO draws its noise from a fixed seed)."""
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        samples = _decode(decoder, inputs.codes)
        generated_centres = np.array([(o.row, o.col) for image in samples for o in find_objects(image)]).reshape(-1, 2)
        metrics = {
            f"samples_{name}": value for name, value in position_coverage(inputs.data_centres, generated_centres).items()
        }
        metrics["objects_per_sample"] = len(generated_centres) / len(samples)
        ends = inputs.ends
        if ends is None:  # the VAE
            ends = _vae_interpolation_ends(model, inputs.interpolations, inputs.pairs_seed, device)
            metrics.update(_vae_test_metrics(model, inputs.test_set, device))
        frames = _decode(decoder, interpolate(*ends, steps).flatten(0, 1)).view(inputs.interpolations, steps, 3, SIZE, SIZE)
    metrics.update(
        {
            f"interpolation_{name}": value
            for name, value in interpolation_measures([[find_objects(frame) for frame in path] for path in frames]).items()
        }
    )
    return metrics, samples, frames


def train_generative(config: GenerativeConfig, progress: bool = True, writer=None) -> GenerativeResult:
    """Train ``config.arch``'s model of ``config.experiment``, measuring it (see :func:`measure`)
    every ``config.measure_every`` epochs and after the last; each measure is logged as
    ``test/<name>`` at its step and kept in the history, and the last is the result's metrics."""
    config.validate()
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    train_set = generate(config.train_scenes, seed=config.seed)
    test_set = generate(config.test_scenes, seed=10_000 + config.seed)  # held out: the VAE's reconstructions
    images = train_set.images.to(device)
    generator = torch.Generator().manual_seed(config.seed)  # the batch order
    if config.experiment == "vae":
        model: nn.Module = VAE(config.arch, config.latent, config.width).to(device)
        decoder = model.decoder
        step = _vae_step(model, images, config)
    else:
        decoder = Decoder(config.arch, config.latent, config.width, batch_norm=True).to(device)  # DCGAN's generator norm
        discriminator = build_discriminator(config).to(device)
        model = nn.ModuleDict({"generator": decoder, "discriminator": discriminator})
        average = average_of(decoder, config.generator_average)
        step = _gan_step(decoder, discriminator, images, config, average)
        if average is not None:  # the measures and samples read the average
            decoder = average.module
    inputs = measure_inputs(config, train_set, test_set, device)
    latest: dict[str, torch.Tensor] = {}

    def check() -> dict[str, float]:
        metrics, latest["samples"], latest["frames"] = measure(model, decoder, inputs, config.steps, device)
        return {f"test/{name}": value for name, value in metrics.items()}

    fitted = fit(
        model,
        step,
        len(images),
        epochs=config.epochs,
        batch_size=config.batch_size,
        generator=generator,
        check=check,
        check_every=config.measure_every,
        device=device,
        progress=progress,
        description=f"{config.experiment}/{config.arch}",
        writer=writer,
    )
    model.eval()
    metrics = {tag.removeprefix("test/"): value for tag, value in fitted.history[-1].items() if tag.startswith("test/")}
    return GenerativeResult(
        config, count_parameters(model), fitted.seconds, metrics, latest["samples"][:64], latest["frames"], fitted.history
    )


def cosine_decay(optimizer: torch.optim.Optimizer, images: torch.Tensor, config: GenerativeConfig):
    """The learning rate of ``optimizer`` decayed to zero along a half cosine over the
    ``config.epochs`` epochs of batches of ``images``, stepped once per batch (as every supervised
    experiment here trains): at constant rates the VAE's held-out ELBO and the GAN's histogram
    distance keep jumping by several percent between measures long after they stop improving."""
    total = config.epochs * batches_per_epoch(len(images), config.batch_size)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)


def _vae_step(model: VAE, images: torch.Tensor, config: GenerativeConfig):
    """Adam on the negative ELBO, its rate decayed by :func:`cosine_decay`; the step's losses
    include the ``learning_rate`` it trained at."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate or DEFAULT_LEARNING_RATES["vae"])
    schedule = cosine_decay(optimizer, images, config)

    def step(indices: torch.Tensor) -> dict[str, torch.Tensor | float]:
        rate = optimizer.param_groups[0]["lr"]
        loss = model.loss(images[indices])
        minimize(optimizer, loss)
        schedule.step()
        return {"loss": loss, "learning_rate": rate}

    return step


def average_of(generator: Decoder, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``generator``'s weights and batch-norm statistics with
    ``decay`` (``average = decay * average + (1 - decay) * current`` at each update, the first
    update a copy), kept in eval mode; ``None`` for ``decay`` 0. Averaging a GAN generator's
    weights steadies its samples, which otherwise follow the last steps of the adversarial game."""
    if decay == 0:
        return None
    return AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True).eval()


def _gan_step(
    generator: Decoder,
    discriminator: Encoder,
    images: torch.Tensor,
    config: GenerativeConfig,
    average: AveragedModel | None = None,
):
    """DCGAN's alternating updates with the non-saturating generator loss, and ``config``'s
    stabilisers: the discriminator's own learning rate, ``discriminator_steps`` discriminator
    updates per generator update, and the R1 penalty on real images (logged as ``r1_penalty``).
    Both rates decay by :func:`cosine_decay`, batch by batch (the generator's also on the batches
    it rests); the step's losses include the generator's ``learning_rate``. ``average`` (see
    :func:`average_of`) is updated after each generator update."""
    generator_rate = config.learning_rate or DEFAULT_LEARNING_RATES["gan"]
    discriminator_rate = config.discriminator_learning_rate or generator_rate
    generator_optimizer = torch.optim.Adam(generator.parameters(), lr=generator_rate, betas=(0.5, 0.999))
    discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=discriminator_rate, betas=(0.5, 0.999))
    schedules = [cosine_decay(optimizer, images, config) for optimizer in (generator_optimizer, discriminator_optimizer)]
    updates = 0

    def step(indices: torch.Tensor) -> dict[str, torch.Tensor | float]:
        losses = _gan_update(indices)
        for schedule in schedules:
            schedule.step()
        return losses

    def _gan_update(indices: torch.Tensor) -> dict[str, torch.Tensor | float]:
        nonlocal updates
        batch = images[indices]
        fake = torch.sigmoid(generator(torch.randn(len(batch), config.latent, device=batch.device)))
        if config.r1_penalty > 0:
            batch = batch.detach().requires_grad_(True)
        real_logits, fake_logits = discriminator(batch), discriminator(fake.detach())
        d_loss = F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        losses: dict[str, torch.Tensor | float] = {"learning_rate": generator_optimizer.param_groups[0]["lr"]}
        if config.r1_penalty > 0:
            (gradient,) = torch.autograd.grad(real_logits.sum(), batch, create_graph=True)
            losses["r1_penalty"] = config.r1_penalty / 2 * gradient.pow(2).flatten(1).sum(dim=1).mean()
            d_loss = d_loss + losses["r1_penalty"]
        minimize(discriminator_optimizer, d_loss)
        losses["discriminator_loss"] = d_loss
        updates += 1
        if updates % config.discriminator_steps:
            return losses
        fooled = discriminator(fake)
        g_loss = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        minimize(generator_optimizer, g_loss)
        if average is not None:
            average.update_parameters(generator)
        losses["generator_loss"] = g_loss
        return losses

    return step


def _vae_interpolation_ends(model: VAE, pairs: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means of ``pairs`` pairs of new scenes of one object, the same shape and colour at
    two places: along each interpolation the object should move, not fade or change."""
    with torch.no_grad():
        return tuple(model.encode(end.images.to(device))[0] for end in moving_object_pairs(pairs, seed))


def _vae_test_metrics(model: VAE, test_set: Scenes, device: torch.device) -> dict[str, float]:
    """Held-out reconstruction: the negative ELBO per image, and the mean squared pixel error and
    the mean absolute miscount of objects of the posterior-mean reconstructions."""
    with torch.no_grad():
        images = test_set.images.to(device)
        torch.manual_seed(0)
        elbo = sum(model.loss(part).item() * len(part) for part in images.split(256)) / len(images)
        reconstructions = _decode(model.decoder, model.encode(images)[0])
    return {
        "test_negative_elbo": elbo,
        "test_pixel_mse": float(((reconstructions - test_set.images) ** 2).mean()),
        "test_object_miscount": object_count_error(reconstructions, (test_set.objects[:, :, 0] >= 0).sum(axis=1)),
    }
