"""The diffusion decoding loop, its config, its outputs and its strategies."""

from .config import DiffusionGenerationConfig
from .mixin import DiffusionGenerationMixin, candidates_and_scores
from .output import DiffusionGenerateOutput, DiffusionStep
from .strategies import STRATEGIES, Strategy, register_strategy

__all__ = [
    "DiffusionGenerationConfig",
    "DiffusionGenerationMixin",
    "DiffusionGenerateOutput",
    "DiffusionStep",
    "STRATEGIES",
    "Strategy",
    "register_strategy",
    "candidates_and_scores",
]
