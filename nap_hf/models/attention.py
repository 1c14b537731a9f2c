"""Attention shared by the bidirectional (diffusion) models: the project's own eager kernel, the choice of
kernel from the config, the padding mask and the default positions."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

__all__ = [
    "attention_function",
    "bidirectional_attention_mask",
    "default_position_ids",
    "eager_attention",
    "softmax_dtype",
]


def softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype in which attention probabilities are computed: float64 stays float64, float32 stays float32,
    half precision (bf16, fp16) is promoted to float32 -- `torch.promote_types(dtype, float32)`."""
    return torch.promote_types(dtype, torch.float32)


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,  # (B, H, Lq, hd)
    key: torch.Tensor,  # (B, H_kv, Lk, hd)
    value: torch.Tensor,  # (B, H_kv, Lk, hd)
    attention_mask: torch.Tensor | None,  # additive float, broadcastable to (B, H, Lq, Lk)
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention in the activations' dtype, as LLaDA's published code computes it: a float64 model
    attends in float64 end to end (so float64 parity and padding tests mean what they say), a half-precision
    model takes its softmax in float32 (:func:`softmax_dtype`).

    The signature is transformers' attention-interface signature, so the models call it exactly where they
    would call `ALL_ATTENTION_FUNCTIONS[...]`. transformers' own `eager_attention_forward` is not used: since
    5.x it rounds the softmax through float32 whatever the activations' dtype (checked by name in
    `tests/test_models.py::test_transformers_behaviour_we_depend_on`). Returns `(output (B, Lq, H, hd),
    probabilities (B, H, Lq, Lk))`."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, Lq, Lk)
    if attention_mask is not None:
        scores = scores + attention_mask[..., : key.shape[-2]]
    probs = nn.functional.softmax(scores, dim=-1, dtype=softmax_dtype(query.dtype)).to(query.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def attention_function(attn_implementation: str | None) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The kernel for `config._attn_implementation`: the project's :func:`eager_attention` for `"eager"` (and
    when unset), otherwise transformers' registered kernel (`"sdpa"`, flash, or one a user registered with
    `transformers.AttentionInterface`)."""
    if attn_implementation in (None, "eager"):
        return eager_attention
    return ALL_ATTENTION_FUNCTIONS.get_interface(attn_implementation, eager_attention)


def bidirectional_attention_mask(
    attention_mask: torch.Tensor | None, dtype: torch.dtype, attn_implementation: str | None = None
) -> torch.Tensor | None:
    """Turn a (B, L) padding mask (1 = real token) into an additive float mask (B, 1, 1, L) that
    every query row applies to the keys; `None` when nothing is padded (full attention).

    An additive float mask is right for both eager and SDPA (a boolean mask is wrong under eager).
    """
    if attention_mask is None:
        return None
    if attention_mask.dim() == 4:
        return attention_mask
    if attention_mask.dim() != 2:
        raise ValueError(
            f"`attention_mask` must be (batch, length), got shape {tuple(attention_mask.shape)}."
        )
    if bool(attention_mask.all()):
        return None
    keep = attention_mask.bool()[:, None, None, :]
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


def default_position_ids(attention_mask: torch.Tensor | None, hidden_states: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so a left-padded row sees the same RoPE positions
    as the unpadded prompt: `cumsum(mask) - 1`, padding set to 0. Without a mask: 0..L-1."""
    bsz, seq_len = hidden_states.shape[:2]
    if attention_mask is None or attention_mask.dim() != 2:
        return torch.arange(seq_len, device=hidden_states.device).unsqueeze(0).expand(bsz, -1)
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)
