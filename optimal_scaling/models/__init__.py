"""Models whose width and depth are knobs."""

from optimal_scaling.models.gpt import GPT
from optimal_scaling.models.mlp import MLP

__all__ = ["GPT", "MLP"]
