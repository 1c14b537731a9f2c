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

_LAZY = {"DiffusionSFTConfig": "training", "DiffusionSFTTrainer": "training"}


def __getattr__(name):
    """Training classes need the `train` extra (trl, peft, datasets): imported on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

# The top-level names, models' included (nap_hf.models lists the same model names in its own __all__).
__all__ = [
    "STRATEGIES",
    "DiffusionGenerateOutput",
    "DiffusionSFTConfig",
    "DiffusionSFTTrainer",
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
