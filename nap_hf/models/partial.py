"""Partial forwards for the KV cache (docs/caching.md), shared by LLaDA and Dream: check the cache a trunk was
given and the positions of a forward over some canvas columns only."""

from __future__ import annotations

import torch

from ..generation.cache import DiffusionCache
from .attention import default_position_ids

__all__ = ["cache_position_ids", "partial_forward_cache"]


def partial_forward_cache(
    cache, past_key_values, cache_position: torch.LongTensor | None, hidden_states: torch.Tensor
) -> DiffusionCache | None:
    """The `DiffusionCache` of this forward (passed as `cache` or `past_key_values`), told which canvas columns
    the forward's Q = `hidden_states.shape[1]` positions are (`cache_position`; None = every column)."""
    cache = cache if cache is not None else past_key_values
    if cache is None:
        if cache_position is not None:
            raise ValueError(
                "cache_position needs a cache: pass `cache=DiffusionCache()` (see docs/caching.md)."
            )
        return None
    if not isinstance(cache, DiffusionCache):
        raise ValueError(
            f"diffusion models attend bidirectionally and take a nap_hf DiffusionCache, got {type(cache).__name__}; "
            "use `nap_hf.generation.cache.DiffusionCache()` or generate(cache_implementation='prefix'|'dual')."
        )
    cache.begin_forward(cache_position, hidden_states.shape[1])
    return cache


def cache_position_ids(
    attention_mask: torch.Tensor | None, hidden_states: torch.Tensor, cache_position: torch.LongTensor | None
) -> torch.LongTensor:
    """RoPE positions of the forward's tokens: over the whole canvas as `default_position_ids` (left padding
    skipped); for a partial forward those of its canvas columns (`attention_mask` covers the whole canvas)."""
    if cache_position is None:
        return default_position_ids(attention_mask, hidden_states)
    if attention_mask is None:
        return cache_position[None, :].expand(hidden_states.shape[0], -1)
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, cache_position]
