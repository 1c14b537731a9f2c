"""LoRA targets that never hit the LM head by accident.

PEFT matches `target_modules` names by suffix, and LLaDA's published names call both the MLP down projection
(`blocks.N.ff_out`) and the LM head (`transformer.ff_out`) `ff_out`: `target_modules=["ff_out"]` would put an
adapter on the head too. The defaults here are a regex that only matches inside the blocks (LLaDA), and the
usual Qwen2 projection names (Dream, whose head is `lm_head`)."""

from __future__ import annotations

__all__ = [
    "LLADA_LORA_TARGETS",
    "DREAM_LORA_TARGETS",
    "default_lora_target_modules",
    "lm_head_name",
    "check_lora_targets",
]

LLADA_LORA_TARGETS = r".*\.blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)"
DREAM_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _model_type(model_or_config) -> str:
    config = getattr(model_or_config, "config", model_or_config)
    return str(getattr(config, "model_type", "")).lower()


def default_lora_target_modules(model_or_config) -> str | list[str]:
    """Attention and MLP projections of every block, never the LM head."""
    kind = _model_type(model_or_config)
    if kind == "llada":
        return LLADA_LORA_TARGETS
    if kind == "dream":
        return list(DREAM_LORA_TARGETS)
    return "all-linear"  # PEFT excludes the output layer for this value


def lm_head_name(model_or_config) -> str:
    """The LM head's module name, for `modules_to_save` when training the head on purpose."""
    return "transformer.ff_out" if _model_type(model_or_config) == "llada" else "lm_head"


def check_lora_targets(model_or_config, target_modules) -> None:
    """Refuse a LLaDA target list that would also hit the LM head through suffix matching."""
    if _model_type(model_or_config) != "llada" or target_modules is None or isinstance(target_modules, str):
        return
    if "ff_out" in set(target_modules):
        raise ValueError(
            "LoRA target_modules contains 'ff_out': PEFT matches by suffix, and in LLaDA 'ff_out' is both the MLP down "
            "projection (blocks.N.ff_out) and the LM head (transformer.ff_out). Use the regex "
            f"{LLADA_LORA_TARGETS!r} (nap_hf.training.default_lora_target_modules), and `modules_to_save="
            "['transformer.ff_out']` if you do want to train the head."
        )
