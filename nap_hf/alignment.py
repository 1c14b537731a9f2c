"""The one place where a model's raw outputs become per-position predictions.

LLaDA predicts the token at position i from output i; Dream (and other models adapted from
autoregressive LMs) from output i-1. Decoding and the training loss both call
:func:`align_predictions`, so nothing is shifted twice and strategies never see the shift."""

from __future__ import annotations

import torch

__all__ = ["align_predictions", "model_shifts_logits"]


def align_predictions(x: torch.Tensor, shift: bool) -> torch.Tensor:
    """Align raw per-position outputs (logits or final hidden states, shape (B, L, ...)) so that
    entry i is the prediction for the token at position i.

    With `shift=True` (Dream): `cat(x[:, :1], x[:, :-1])`, exactly as Dream's published decoder, so
    position 0 reuses output 0. With `shift=False` (LLaDA) the tensor is returned unchanged.
    The shift commutes with the LM head, so the decoder may shift hidden states and then run the head
    on the rows it needs."""
    if not shift:
        return x
    return torch.cat([x[:, :1], x[:, :-1]], dim=1)


def model_shifts_logits(model) -> bool:
    """Whether `model`'s raw logits are shifted by one (Dream-style)."""
    shift = getattr(model, "shift_logits", None)
    if shift is None:
        shift = getattr(getattr(model, "generation_config", None), "shift_logits", None)
    return bool(shift)
