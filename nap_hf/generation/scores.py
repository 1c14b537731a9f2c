"""Score functions: how sure the model is of each candidate, higher = surer. A registry by name, as
`generate(score=...)` and the strategies (`Strategy.score_kind`) name them; `register_score` adds one.

Each function takes the (N, V) logits the score is read from (raw, or tempered and filtered for Dream), their
(N, 1) log-sum-exp and the (N,) candidate ids, and returns (N,) scores."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["SCORES", "ScoreFn", "register_score", "score_of"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor, torch.LongTensor], torch.Tensor]

SCORES: dict[str, ScoreFn] = {}


def register_score(name: str) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator: make `fn(logits, lse, x0) -> (N,)` available as `score=name`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a score needs a non-empty name, got {name!r}.")

    def add(fn: ScoreFn) -> ScoreFn:
        SCORES[name] = fn
        return fn

    return add


def score_of(name: str) -> ScoreFn:
    """The registered score `name`; a `ValueError` naming the valid ones otherwise."""
    try:
        return SCORES[name]
    except KeyError:
        raise ValueError(f"score={name!r} is unknown; choose one of {sorted(SCORES)}.") from None


@register_score("confidence")
def confidence(logits: torch.Tensor, lse: torch.Tensor, x0: torch.LongTensor) -> torch.Tensor:
    """p(x0), the candidate's probability (LLaDA's `low_confidence`)."""
    return (logits.gather(-1, x0[:, None]) - lse).exp().squeeze(-1)


@register_score("margin")
def margin(logits: torch.Tensor, lse: torch.Tensor, x0: torch.LongTensor) -> torch.Tensor:
    """p1 - p2, the gap between the two most likely tokens (Dream's `topk_margin`)."""
    top2 = (logits.topk(2, dim=-1).values - lse).exp()
    return top2[:, 0] - top2[:, 1]


@register_score("entropy")
def entropy(logits: torch.Tensor, lse: torch.Tensor, x0: torch.LongTensor) -> torch.Tensor:
    """sum p log p, the negative entropy (0 log 0 = 0)."""
    logp = logits - lse
    return (logp.exp() * logp.masked_fill(torch.isinf(logp), 0.0)).sum(-1)


@register_score("dream_entropy")
def dream_entropy(logits: torch.Tensor, lse: torch.Tensor, x0: torch.LongTensor) -> torch.Tensor:
    """Dream's formula of the negative entropy: sum p log(p + 1e-10) (Dream's `entropy` rule)."""
    p = (logits - lse).exp()
    return (p * torch.log(p + 1e-10)).sum(-1)
