"""The masked-diffusion SFT objective as pure functions (docs/design.md §7): noise a batch, weight the masked
positions, and reduce to a loss whose value per optimizer step does not depend on how the global batch is
split. The trainer calls these; tests check them against a plain, slow computation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..alignment import align_predictions

__all__ = [
    "SEG_PROMPT",
    "SEG_RESPONSE",
    "SEG_THINK",
    "SEG_SUMMARY",
    "SEG_HEADER",
    "NoisedBatch",
    "sample_noise",
    "row_seeds",
    "cart_weights",
    "isolated_cart_weights",
    "position_weights",
    "diffusion_loss_terms",
    "masked_predictions",
]

# Segment codes of every position of a training row (collated as `segments`, (B, L) int8).
SEG_PROMPT = 0  # the prompt: never noised
SEG_RESPONSE = 1  # plain response text and its EOS padding: noised with p_mask
SEG_THINK = 2  # the content of a path slot (NAP instance): noised with p_mask, or r = 0.9 t when structured
SEG_SUMMARY = 3  # the content of the summary slot
SEG_HEADER = 4  # a clamped header of the slot-aligned layout: never noised (decoding never masks it)

WeightKind = Literal["elbo", "one_minus_t", "cart", "uniform"]


@dataclass
class NoisedBatch:
    """A batch after the forward process. Tensors are (B, L) unless noted."""

    noisy_input_ids: torch.LongTensor
    masked: torch.BoolTensor
    p_position: torch.Tensor  # the probability with which each position was masked (0 where never)
    t: torch.Tensor  # (B,)


def sample_noise(
    input_ids: torch.LongTensor,
    segments: torch.Tensor,
    mask_token_id: int,
    *,
    eps: float = 1e-3,
    structured: bool = False,
    generator: torch.Generator | None = None,
    row_seeds: list[int] | None = None,
) -> NoisedBatch:
    """Forward process: t ~ U(0, 1) once per row, p_mask = (1 - eps) t + eps, and every noisable position
    masked independently with probability p_mask. Prompt and header positions are never masked.

    With `structured=True` (NAP training code, for slot-aligned NAP instances): r = 0.9 t; path contents are
    masked with probability r; the summary is masked entirely when 1 - t < 0.8, else with probability
    r (1 + z), z ramping from 0 to 1 over the summary slot.

    Randomness: `generator` (or the global RNG), or `row_seeds`: one seed per row, each row's t and masks drawn
    from its own generator (see :func:`row_seeds`), so a row is noised the same whatever batch it sits in."""
    B, L = input_ids.shape
    device = input_ids.device
    if row_seeds is not None:
        t = torch.empty(B, device=device)
        u = torch.empty(B, L, device=device)
        for b, seed in enumerate(row_seeds):
            g = torch.Generator().manual_seed(int(seed))
            t[b] = torch.rand(1, generator=g)[0]
            u[b] = torch.rand(L, generator=g).to(device)
    else:
        t = torch.rand(B, device=device, generator=generator)
        u = torch.rand(B, L, device=device, generator=generator)
    p_mask = (1 - eps) * t + eps  # (B,)
    p = torch.zeros(B, L, dtype=torch.float32, device=device)
    noisable = (segments == SEG_RESPONSE) | (segments == SEG_THINK) | (segments == SEG_SUMMARY)
    if not structured:
        p = torch.where(noisable, p_mask[:, None], p)
    else:
        r = (0.9 * t)[:, None].expand(B, L)
        p = torch.where(segments == SEG_RESPONSE, p_mask[:, None].expand(B, L), p)
        p = torch.where(segments == SEG_THINK, r, p)
        summ = segments == SEG_SUMMARY
        # z ramps 0 -> 1 over each row's summary positions
        idx = summ.long().cumsum(-1) - 1
        n = summ.sum(-1, keepdim=True).clamp(min=2)
        z = (idx.clamp(min=0).float() / (n - 1).float()).clamp(0, 1)
        full = (1 - t < 0.8)[:, None].expand(B, L)
        p_sum = torch.where(full, torch.ones_like(r), (r * (1 + z)).clamp(max=1.0))
        p = torch.where(summ, p_sum, p)
        p = torch.where(noisable, p.clamp(min=eps), p)
    masked = (u < p) & noisable
    return NoisedBatch(input_ids.masked_fill(masked, mask_token_id), masked, p, t)


def row_seeds(input_ids: torch.LongTensor, pad_token_id: int, *keys: int) -> list[int]:
    """A seed per row from its content (trailing padding ignored) and `keys` (e.g. the run seed and the
    optimizer step): the same example gets the same noise at a given step whatever the per-device batch,
    accumulation or process count, so the loss of a step does not depend on how the batch is split."""
    import hashlib

    import numpy as np

    out = []
    for row in input_ids.detach().cpu().numpy():
        n = len(row)
        while n > 0 and row[n - 1] == pad_token_id:
            n -= 1
        h = hashlib.blake2b(np.asarray(row[:n], dtype=np.int64).tobytes(), digest_size=8)
        h.update(np.asarray(keys, dtype=np.int64).tobytes())
        out.append(int.from_bytes(h.digest(), "little") & ((1 << 63) - 1))
    return out


def cart_weights(masked: torch.BoolTensor, p: float = 0.1) -> torch.Tensor:
    """CART weights: a masked position i gets sum over unmasked j != i (prompt included) of
    0.5 p (1 - p)^(|i - j| - 1); 0 elsewhere. Computed as a 1-D convolution with the geometric kernel,
    truncated where it falls below 1e-12 of its peak."""
    B, L = masked.shape
    if not 0 < p < 1:
        raise ValueError(f"cart p must be in (0, 1), got {p}.")
    span = min(L - 1, max(1, int(torch.log(torch.tensor(1e-12)) / torch.log(torch.tensor(1 - p))) + 1))
    d = torch.arange(1, span + 1, dtype=torch.float64, device=masked.device)
    half = 0.5 * p * (1 - p) ** (d - 1)  # weight at distance d
    kernel = torch.cat([half.flip(0), torch.zeros(1, dtype=torch.float64, device=masked.device), half])
    unmasked = (~masked).to(torch.float64)[:, None, :]
    w = F.conv1d(unmasked, kernel[None, None, :], padding=span)[:, 0, :]
    return (w * masked).to(torch.float32)


def isolated_cart_weights(
    masked: torch.BoolTensor, visible: torch.BoolTensor, positions: torch.LongTensor, p: float = 0.1
) -> torch.Tensor:
    """CART weights under path isolation (docs/design.md §10): a masked position i gets the sum over the unmasked
    j != i that i can attend to (`visible` (B, L, L)) of 0.5 p (1 - p)^(d - 1), d = |positions_i - positions_j|
    (RoPE positions, not columns: isolated paths share positions). Dense, O(L^2) per row."""
    if not 0 < p < 1:
        raise ValueError(f"cart p must be in (0, 1), got {p}.")
    pos = positions.to(torch.float64)
    d = (pos[:, :, None] - pos[:, None, :]).abs().clamp(min=1)
    keep = visible & (~masked)[:, None, :]
    keep = keep & ~torch.eye(masked.shape[1], dtype=torch.bool, device=masked.device)[None]
    w = (0.5 * p * (1 - p) ** (d - 1) * keep).sum(-1)
    return (w * masked).to(torch.float32)


def position_weights(
    kind: WeightKind,
    noised: NoisedBatch,
    *,
    eps: float = 1e-3,
    cart_p: float = 0.1,
    visible: torch.BoolTensor | None = None,
    positions: torch.LongTensor | None = None,
) -> torch.Tensor:
    """Per-position loss weights (B, L), zero off the masked positions.
    `elbo`: 1 / p (the position's masking probability: p_mask, or the structured schedule's);
    `one_minus_t`: 1 - t; `cart`: :func:`cart_weights`, or with `visible` (B, L, L) and `positions` (B, L) of
    path isolation :func:`isolated_cart_weights`; `uniform`: 1."""
    masked = noised.masked
    if kind == "elbo":
        w = 1.0 / noised.p_position.clamp(min=eps)
    elif kind == "one_minus_t":
        w = (1 - noised.t)[:, None].expand_as(noised.p_position)
    elif kind == "cart":
        if visible is not None:
            return isolated_cart_weights(masked, visible, positions, cart_p)
        return cart_weights(masked, cart_p)
    elif kind == "uniform":
        w = torch.ones_like(noised.p_position)
    else:
        raise ValueError(
            f"loss_weight={kind!r} is unknown; choose one of 'elbo', 'one_minus_t', 'cart', 'uniform'."
        )
    return w * masked


def masked_predictions(logits: torch.Tensor, masked: torch.BoolTensor, shift: bool) -> torch.Tensor:
    """(N, V) aligned predictions at the masked positions from raw (B, L, V) logits (Dream: shifted once,
    here, by :func:`align_predictions`)."""
    return align_predictions(logits, shift)[masked]


def diffusion_loss_terms(
    masked_logits: torch.Tensor,
    input_ids: torch.LongTensor,
    noised: NoisedBatch,
    weights: torch.Tensor,
    segments: torch.Tensor,
    *,
    normalization: Literal["answer_length", "masked_tokens"] = "answer_length",
) -> torch.Tensor:
    """The SUM of this micro-batch's loss contributions; divide by the global item count (rows for
    `answer_length`, masked tokens for `masked_tokens`) to get the loss of the optimizer step.

    `masked_logits` (N, V) are the aligned predictions at the N masked positions (row-major), so no
    full-vocabulary work is spent elsewhere. `answer_length`: each row's weighted sum of cross-entropies is
    divided by its number of non-prompt positions (LLaDA). `masked_tokens`: the plain weighted sum (NAP code).
    A row with nothing masked contributes exactly zero."""
    masked = noised.masked
    if normalization not in ("answer_length", "masked_tokens"):
        raise ValueError(
            f"loss_normalization={normalization!r} is unknown; use 'answer_length' or 'masked_tokens'."
        )
    if masked_logits.shape[0] == 0:
        return masked_logits.sum() * 0.0  # keeps the graph (and DDP) connected
    nll = F.cross_entropy(masked_logits.float(), input_ids[masked], reduction="none")  # (N,)
    per_pos = torch.zeros(masked.shape, dtype=nll.dtype, device=nll.device)
    per_pos[masked] = nll * weights[masked]
    if normalization == "answer_length":
        answer_len = (segments != SEG_PROMPT).sum(-1).clamp(min=1)
        return (per_pos.sum(-1) / answer_len).sum()
    return per_pos.sum()
