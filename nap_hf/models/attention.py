"""Attention-mask and position helpers shared by the bidirectional (diffusion) models."""

from __future__ import annotations

import torch

__all__ = ["bidirectional_attention_mask", "default_position_ids"]


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
