"""Masked-diffusion supervised fine-tuning (TRL-style)."""

from .config import DiffusionSFTConfig
from .lora import check_lora_targets, default_lora_target_modules, lm_head_name
from .noise import cart_weights, diffusion_loss_terms, position_weights, sample_noise
from .trainer import DiffusionDataCollator, DiffusionSFTTrainer

__all__ = [
    "DiffusionSFTConfig",
    "DiffusionSFTTrainer",
    "DiffusionDataCollator",
    "default_lora_target_modules",
    "check_lora_targets",
    "lm_head_name",
    "sample_noise",
    "cart_weights",
    "position_weights",
    "diffusion_loss_terms",
]
