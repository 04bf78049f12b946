"""The CoordConv paper's supervised Not-so-Clevr tasks (coordinate classification, rendering,
regression): data, models, training, report."""

from rl_coordconv.supervised.data import SPLITS, NotSoClevr
from rl_coordconv.supervised.models import MODELS, build_model
from rl_coordconv.supervised.train import TASKS, TrainConfig, TrainResult, train

__all__ = ["MODELS", "SPLITS", "TASKS", "NotSoClevr", "TrainConfig", "TrainResult", "build_model", "train"]
