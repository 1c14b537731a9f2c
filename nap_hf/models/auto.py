"""Registration with transformers' Auto classes (done on `import nap_hf`), and
`enable_diffusion_generate` to give the diffusion `generate` to a model loaded some other way."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from ..generation.config import DiffusionGenerationConfig
from ..generation.mixin import DiffusionGenerationMixin
from .dream import DreamConfig, DreamModel, DreamTokenizer
from .llada import LLaDAConfig, LLaDAModelLM

__all__ = ["register_auto_classes", "enable_diffusion_generate"]

_REGISTERED = False


def register_auto_classes() -> None:
    """Make `AutoConfig`, `AutoModel`, `AutoModelForCausalLM` (LLaDA's published `auto_map` names both) and
    `AutoTokenizer` (Dream) resolve the published checkpoints to the classes of this package. Local code is
    preferred over a checkpoint's `auto_map`, so no remote code runs and `trust_remote_code` is not needed."""
    global _REGISTERED
    if _REGISTERED:
        return
    AutoConfig.register(LLaDAConfig.model_type, LLaDAConfig, exist_ok=True)
    AutoConfig.register(DreamConfig.model_type, DreamConfig, exist_ok=True)
    for auto in (AutoModel, AutoModelForCausalLM):
        auto.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
        auto.register(DreamConfig, DreamModel, exist_ok=True)
    AutoTokenizer.register(DreamConfig, tokenizer_class=DreamTokenizer, exist_ok=True)
    _REGISTERED = True


def enable_diffusion_generate(
    model: PreTrainedModel, *, mask_token_id: int, shift_logits: bool = False, **generation_defaults
) -> PreTrainedModel:
    """Give a masked-diffusion model loaded some other way (its own remote code, a fine-tuned wrapper,
    a PEFT model's base) the diffusion `generate` of this package, in place.

    Args:
        model: a model whose `forward(input_ids, attention_mask)` returns `.logits` (B, L, V) with
            bidirectional attention.
        mask_token_id: id of the mask token.
        shift_logits: `True` if the logits for position i sit at i-1 (Dream-style models).
        **generation_defaults: any `DiffusionGenerationConfig` field (`steps=`, `strategy=`, ...).

    Returns:
        the same model object, whose class now has `DiffusionGenerationMixin.generate` first in its MRO.

    Example:
    ```python
    >>> model = AutoModel.from_pretrained(path, trust_remote_code=True)  # doctest: +SKIP  (your choice)
    >>> enable_diffusion_generate(model, mask_token_id=126336)  # doctest: +SKIP
    >>> model.generate(ids, strategy="confidence", steps=64, gen_length=64)  # doctest: +SKIP
    ```
    """
    if mask_token_id is None:
        raise ValueError("enable_diffusion_generate: mask_token_id is required (the id of the mask token).")
    cls = type(model)
    if not issubclass(cls, DiffusionGenerationMixin):
        model.__class__ = type(f"Diffusion{cls.__name__}", (DiffusionGenerationMixin, cls), {})
    config = DiffusionGenerationConfig.from_generation_config(
        getattr(model, "generation_config", None), model.config
    )
    config.mask_token_id = mask_token_id
    config.shift_logits = bool(shift_logits)
    for key, value in generation_defaults.items():
        setattr(config, key, value)
    model.generation_config = config
    model.shift_logits = bool(shift_logits)
    return model
