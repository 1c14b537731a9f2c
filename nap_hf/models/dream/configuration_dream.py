"""Dream configuration: the Qwen2 layout with bidirectional attention and a mask token, compatible
with the published `config.json` of Dream-org/Dream-v0-{Instruct,Base}-7B (`model_type: "Dream"`)."""

from __future__ import annotations

from typing import Any

from transformers import Qwen2Config

__all__ = ["DreamConfig"]


class DreamConfig(Qwen2Config):
    r"""Configuration of a Dream masked-diffusion model (Qwen2 blocks, bidirectional attention,
    SHIFTED logits: the prediction for position i is the model output at i-1).

    Accepts every field of the published config (`rope_theta`, `rope_scaling`, `mask_token_id`, ...).
    `save_pretrained` writes `rope_theta` beside transformers 5's `rope_parameters`, so the saved file is
    still read correctly by Dream's original remote code.

    Example:
    ```python
    >>> from nap_hf import DreamConfig, DreamModel
    >>> config = DreamConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...                      num_attention_heads=4, num_key_value_heads=2, mask_token_id=299,
    ...                      eos_token_id=1, pad_token_id=1)
    >>> model = DreamModel(config)
    ```
    """

    model_type = "Dream"

    mask_token_id: int | None = 151666
    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int | None = 4
    max_position_embeddings: int = 131072
    rms_norm_eps: float = 1e-6
    use_cache: bool = False
    eos_token_id: int | list[int] | None = 151643
    pad_token_id: int | None = 151643
    bos_token_id: int | None = 151643

    def __post_init__(self, **kwargs):
        kwargs.setdefault("rope_theta", kwargs.get("rope_theta", 1000000.0))
        super().__post_init__(**kwargs)
        self.is_causal = False

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        rope = out.get("rope_parameters") or {}
        if "rope_theta" in rope:
            out["rope_theta"] = rope["rope_theta"]
            out.setdefault("rope_scaling", None if rope.get("rope_type", "default") == "default" else rope)
        return out
