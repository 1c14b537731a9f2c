"""nap-hf: diffusion language models (LLaDA, Dream) on the Hugging Face stack, with every decoding rule
of the NAP paper, parallel-forced decoding and AR-ness metrics."""

from .alignment import align_predictions
from .generation import (
    STRATEGIES,
    DiffusionGenerateOutput,
    DiffusionGenerationConfig,
    DiffusionGenerationMixin,
    DiffusionStep,
)
from .models import (
    DreamConfig,
    DreamModel,
    DreamTokenizer,
    LLaDAConfig,
    LLaDAModel,
    LLaDAModelLM,
    enable_diffusion_generate,
    register_auto_classes,
)

register_auto_classes()

__version__ = "0.1.0"

__all__ = [
    "STRATEGIES",
    "DiffusionGenerateOutput",
    "DiffusionGenerationConfig",
    "DiffusionGenerationMixin",
    "DiffusionStep",
    "DreamConfig",
    "DreamModel",
    "DreamTokenizer",
    "LLaDAConfig",
    "LLaDAModel",
    "LLaDAModelLM",
    "align_predictions",
    "enable_diffusion_generate",
    "register_auto_classes",
]
