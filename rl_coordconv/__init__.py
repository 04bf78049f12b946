"""CoordConv layers and Stable-Baselines3 feature extractors."""

from rl_coordconv.extractors import ARCHS, CoordConvNatureCNN, policy_kwargs_for
from rl_coordconv.layers import AddCoords, CoordConv2d, coordinate_channels

__all__ = ["ARCHS", "AddCoords", "CoordConv2d", "CoordConvNatureCNN", "coordinate_channels", "policy_kwargs_for"]
__version__ = "0.3.0"
