"""The paper's detection experiment at laptop scale: Faster R-CNN on digits scattered on a canvas.

Each 64x64 canvas holds one to four of scikit-learn's 8x8 digits, upscaled to 16x16, at uniform
positions that do not overlap; a digit's box is the tight box of its ink and its label the digit
(1-10 here, 0 being torchvision's background). Train and test canvases hold different digit
images, drawn from a seeded split of the 1,797, and different layouts.

The detector is torchvision's ``FasterRCNN`` trained from scratch on a small backbone (five 3x3
convolutions, stride 4, no pretrained weights). The CoordConv detector replaces two convolutions
with :class:`~rl_coordconv.layers.CoordConv2d`: the backbone's first layer and the RPN head's 3x3
convolution, the layer that decides where the proposals are. The conv detector has none.

torchvision's compiled ops (NMS, RoIAlign) are built against PyPI's torch, which cannot load
beside a local CPU-only build of the same version; ``make detection-venv`` makes a second
environment (``.venv-detection``) with PyPI's torch, which runs on CPU as well as CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from rl_coordconv.supervised.archs import ARCHS, conv_layer
from rl_coordconv.supervised.classification import load_digits
from rl_coordconv.supervised.fitting import batches_per_epoch, fit, minimize
from rl_coordconv.supervised.models import count_parameters
from rl_coordconv.supervised.settings import validate_settings

CANVAS = 64
SCALE = 2  # 8x8 digits drawn as 16x16
DIGIT = 8 * SCALE
MAX_DIGITS = 4
CLASSES = 11  # the ten digits as labels 1-10, and torchvision's background 0
SCORE_THRESHOLD = 0.5  # detections that count for the mean IoU and the recall
ROI_SIZE = 7  # RoIAlign's output, per side
MONITORED = 100  # test canvases of the per-epoch learning curve


def require_torchvision() -> None:
    """Import torchvision, or raise an ``ImportError`` that says how to get one that loads."""
    try:
        import torchvision.models.detection  # noqa: F401  (raises RuntimeError where the compiled ops do not load)
    except (ImportError, RuntimeError) as error:
        raise ImportError(
            f"the detection experiment needs torchvision with its compiled ops ({error}); torchvision's wheels are built "
            "against PyPI's torch, which a local CPU-only torch cannot stand in for: run `make detection-venv` and use "
            "`.venv-detection/bin/rl-coordconv supervised --experiment detection`"
        ) from error


def available() -> bool:
    """Whether torchvision loads here, so that the detection experiment can run."""
    try:
        require_torchvision()
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class DigitCanvases:
    """``images``: ``(N, 1, 64, 64)`` float32 in [0, 1]; per canvas ``boxes`` ``(K, 4)`` float32
    ``(x1, y1, x2, y2)`` in pixels (``x2``, ``y2`` one past the last inked column and row),
    ``labels`` ``(K,)`` int64 digit + 1, ``digit_indices`` ``(K,)`` rows of ``load_digits()``, and
    ``layouts``: the sorted ``(row, col)`` top-left corners of the canvas's 16x16 digit patches."""

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    digit_indices: list[np.ndarray]
    layouts: list[tuple[tuple[int, int], ...]]

    def __len__(self) -> int:
        return len(self.images)

    def targets(self, indices, device: torch.device | str = "cpu") -> list[dict[str, torch.Tensor]]:
        """torchvision's detection targets of the canvases ``indices``."""
        return [{"boxes": self.boxes[i].to(device), "labels": self.labels[i].to(device)} for i in indices]


def ink_box(patch: np.ndarray) -> tuple[int, int, int, int]:
    """``(x1, y1, x2, y2)`` of the nonzero pixels of a 2-D ``patch``, ``x2``/``y2`` exclusive."""
    rows, cols = np.flatnonzero(patch.any(axis=1)), np.flatnonzero(patch.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _layout(rng: np.random.Generator, count: int) -> list[tuple[int, int]]:
    """``count`` top-left corners of 16x16 patches on the canvas, pairwise disjoint (rejection sampling)."""
    corners: list[tuple[int, int]] = []
    while len(corners) < count:
        row, col = (int(v) for v in rng.integers(0, CANVAS - DIGIT + 1, size=2))
        if all(abs(row - r) >= DIGIT or abs(col - c) >= DIGIT for r, c in corners):
            corners.append((row, col))
    return corners


def _draw(rng: np.random.Generator, count: int, pool: np.ndarray, avoid: set) -> DigitCanvases:
    """``count`` canvases of digits from ``pool`` (rows of ``load_digits()``), no two with the same
    layout and none with a layout in ``avoid``."""
    digit_images, digit_labels = load_digits()
    images = np.zeros((count, 1, CANVAS, CANVAS), dtype=np.float32)
    boxes, labels, indices, layouts = [], [], [], []
    taken = set(avoid)
    while len(indices) < count:
        corners = _layout(rng, int(rng.integers(1, MAX_DIGITS + 1)))
        layout = tuple(sorted(corners))
        if layout in taken:
            continue
        taken.add(layout)
        layouts.append(layout)
        chosen = rng.choice(pool, size=len(corners), replace=False)
        canvas_boxes = []
        for (row, col), digit in zip(corners, chosen):
            patch = np.kron(digit_images[digit] / 16.0, np.ones((SCALE, SCALE)))
            images[len(indices), 0, row : row + DIGIT, col : col + DIGIT] = patch
            x1, y1, x2, y2 = ink_box(patch)
            canvas_boxes.append((col + x1, row + y1, col + x2, row + y2))
        boxes.append(torch.tensor(canvas_boxes, dtype=torch.float32))
        labels.append(torch.from_numpy(digit_labels[chosen] + 1))
        indices.append(chosen)
    return DigitCanvases(torch.from_numpy(images), boxes, labels, indices, layouts)


def digit_canvases(
    seed: int, train_canvases: int = 2000, test_canvases: int = 500, test_fraction: float = 0.2
) -> tuple[DigitCanvases, DigitCanvases]:
    """``(train, test)`` canvases of ``seed``: the test canvases use only the held-out
    ``test_fraction`` of the digit images, and none repeats a train layout."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(load_digits()[0]))
    held_out = round(test_fraction * len(order))
    train = _draw(rng, train_canvases, order[held_out:], set())
    test = _draw(rng, test_canvases, order[:held_out], set(train.layouts))
    return train, test


# ----------------------------------------------------------------------------------------------------------------------
# Model


class Backbone(nn.Sequential):
    """``(B, 1, H, W)`` -> ``(B, 4 width, H / 4, W / 4)``; the first convolution a ``CoordConv2d`` for ``arch="coordconv"``."""

    def __init__(self, arch: str, width: int = 16) -> None:
        super().__init__(
            conv_layer(arch, 1, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),  # 32 x 32
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),  # 16 x 16
            nn.Conv2d(4 * width, 4 * width, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.out_channels = 4 * width  # what FasterRCNN reads


def build_detector(arch: str, width: int = 16, representation: int = 128) -> nn.Module:
    """torchvision's ``FasterRCNN`` for 64x64 one-channel canvases, untrained.

    One feature map at stride 4; anchors of 12, 16 and 24 pixels at aspect ratios 1/2, 1 and 2;
    RoIAlign to ``ROI_SIZE`` x ``ROI_SIZE`` with one sample per bin (RoIAlign's backward is the
    costly part of a training step on CPU) and a two-layer MLP head of ``representation`` units.
    For ``arch="coordconv"`` the backbone's first convolution and the RPN head's convolution are
    ``CoordConv2d``.
    """
    require_torchvision()
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign

    backbone = Backbone(arch, width)
    anchors = AnchorGenerator(sizes=((12, 16, 24),), aspect_ratios=((0.5, 1.0, 2.0),))
    rpn_head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0])
    if arch == "coordconv":  # the conv detector keeps RPNHead's convolution, with its initialization
        channels = backbone.out_channels
        rpn_head.conv[0][0] = conv_layer(arch, channels, channels, 3, padding=1)
    return FasterRCNN(
        backbone,
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=ROI_SIZE, sampling_ratio=1),
        box_head=TwoMLPHead(backbone.out_channels * ROI_SIZE**2, representation),
        box_predictor=FastRCNNPredictor(representation, CLASSES),
        # The canvases as they are: no resizing, one grey channel in [0, 1].
        min_size=CANVAS,
        max_size=CANVAS,
        image_mean=[0.0],
        image_std=[1.0],
        # Budgets for at most four objects per image (torchvision's defaults are for COCO).
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=150,
        rpn_post_nms_top_n_test=50,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=32,
        box_detections_per_img=20,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Metrics


def best_ious(predicted_boxes: torch.Tensor, true_boxes: torch.Tensor) -> torch.Tensor:
    """``(K,)``: each true box's IoU with the prediction that overlaps it most (0 with none).
    ``(P, 4)`` and ``(K, 4)`` boxes ``(x1, y1, x2, y2)``."""
    from torchvision.ops import box_iou

    if len(predicted_boxes) == 0:
        return torch.zeros(len(true_boxes))
    return box_iou(true_boxes, predicted_boxes).max(dim=1).values


def detection_metrics(
    predictions: list[dict[str, torch.Tensor]],
    targets: list[dict[str, torch.Tensor]],
    score_threshold: float = SCORE_THRESHOLD,
) -> dict[str, float]:
    """The test measures over a set of images, each a torchvision ``boxes``/``labels`` (/``scores``) dict:

    - ``mean_iou``: each true box's IoU with its best prediction scoring at least ``score_threshold``,
      of any label, averaged over the true boxes (the paper's measure);
    - ``recall_50``: the share of true boxes that such a prediction of the right label overlaps
      with IoU >= 0.5 (the boxes do not overlap, so one prediction cannot serve two);
    - ``map_50``: COCO's mean average precision at IoU 0.5 over all predictions (torchmetrics).
    """
    from torchmetrics.detection import MeanAveragePrecision
    from torchvision.ops import box_iou

    ious, hits = [], []
    for prediction, target in zip(predictions, targets, strict=True):
        confident = prediction["scores"] >= score_threshold
        boxes, labels = prediction["boxes"][confident], prediction["labels"][confident]
        ious.append(best_ious(boxes, target["boxes"]))
        if len(boxes):
            same_label = target["labels"][:, None] == labels[None, :]
            hits.append(((box_iou(target["boxes"], boxes) >= 0.5) & same_label).any(dim=1))
        else:
            hits.append(torch.zeros(len(target["boxes"]), dtype=torch.bool))
    average_precision = MeanAveragePrecision(iou_type="bbox", iou_thresholds=[0.5])
    average_precision.update(predictions, targets)
    return {
        "mean_iou": float(torch.cat(ious).mean()),
        "recall_50": float(torch.cat(hits).float().mean()),
        "map_50": float(average_precision.compute()["map"]),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Training


@dataclass
class DetectionConfig:
    """One detector's training. At the 0.3.0 budget of 7 epochs the test mean IoU still rose by up
    to 4 % over the last fifth (results/supervised/detection/tb of 0.3.0): the default is three times it."""

    arch: str = "coordconv"
    seed: int = 0
    train_canvases: int = 2000
    test_canvases: int = 500
    epochs: int = 20  # the same for both archs: the report's plateau rule is stated over it
    batch_size: int = 16
    learning_rate: float = 1e-3  # Adam, cosine-decayed to 0
    width: int = 16  # channels of the backbone's first convolution (its output 4x)
    device: str = "cpu"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting and what is accepted."""
        validate_settings(self, {"arch": ARCHS}, ("train_canvases", "test_canvases", "epochs", "batch_size", "width"))


@dataclass
class DetectionResult:
    config: DetectionConfig
    parameters: int
    seconds: float
    metrics: dict[str, float]  # detection_metrics on the test canvases
    examples: torch.Tensor = field(repr=False)  # (E, 1, 64, 64) the first test canvases
    example_targets: list[dict[str, torch.Tensor]] = field(repr=False)
    example_predictions: list[dict[str, torch.Tensor]] = field(repr=False)
    history: list[dict[str, float]] = field(default_factory=list, repr=False)  # fit's records: the per-epoch curve


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> list[dict[str, torch.Tensor]]:
    """The detector's ``boxes``/``labels``/``scores`` per image, on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for batch in images.split(batch_size):
        outputs += [{key: value.cpu() for key, value in output.items()} for output in model(list(batch.to(device)))]
    return outputs


def train_detector(config: DetectionConfig, progress: bool = True, writer=None, examples: int = 8) -> DetectionResult:
    """Train one detector on the canvases of ``config.seed`` (Adam, cosine decay) and measure it on
    the test canvases; after each epoch, the learning curve's test measures on the first
    ``MONITORED`` test canvases (all of them would cost seconds per epoch)."""
    config.validate()
    device = torch.device(config.device)
    train_set, test_set = digit_canvases(config.seed, config.train_canvases, config.test_canvases)
    torch.manual_seed(config.seed)
    model = build_detector(config.arch, config.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    steps = config.epochs * batches_per_epoch(len(train_set), config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    test_targets = test_set.targets(range(len(test_set)))

    def step(indices: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = model(list(train_set.images[indices].to(device)), train_set.targets(indices.tolist(), device))
        minimize(optimizer, sum(losses.values()))
        return losses

    def check() -> dict[str, float]:
        monitored = detection_metrics(predict(model, test_set.images[:MONITORED]), test_targets[:MONITORED])
        return {f"test/{name}": value for name, value in monitored.items()}

    fitted = fit(
        model,
        step,
        len(train_set),
        epochs=config.epochs,
        batch_size=config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
        schedule=schedule,
        check=check,
        progress=progress,
        description=f"detection/{config.arch}/seed{config.seed}",
        writer=writer,
    )
    predictions = predict(model, test_set.images)
    return DetectionResult(
        config,
        count_parameters(model),
        fitted.seconds,
        detection_metrics(predictions, test_targets),
        test_set.images[:examples],
        test_targets[:examples],
        predictions[:examples],
        fitted.history,
    )
