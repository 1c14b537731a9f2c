"""Hub-compatible masked-diffusion models (no remote code)."""

from .auto import enable_diffusion_generate, register_auto_classes
from .dream import DreamConfig, DreamModel, DreamTokenizer
from .llada import LLaDAConfig, LLaDAModel, LLaDAModelLM

# The same model names stand in nap_hf.__all__: each package lists what it exports.
__all__ = [
    "enable_diffusion_generate",
    "register_auto_classes",
    "DreamConfig",
    "DreamModel",
    "DreamTokenizer",
    "LLaDAConfig",
    "LLaDAModel",
    "LLaDAModelLM",
]
