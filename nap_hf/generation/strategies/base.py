"""The small interface every decoding strategy implements, the shared LLaDA step budget, and the
registry. A strategy only answers "which positions now?"; the loop in `generation/mixin.py` owns the
forward pass, candidates, the trace and NFE."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

__all__ = [
    "DecodeState",
    "StepPlan",
    "Strategy",
    "STRATEGIES",
    "register_strategy",
    "llada_num_transfer_tokens",
    "topk_mask",
]


@dataclass
class DecodeState:
    """What a strategy may look at. Tensors are (B, L) over the whole canvas."""

    x: torch.LongTensor  # the canvas, updated in place by the loop
    fillable: torch.BoolTensor  # positions the loop may ever commit (generation region + prompt masks)
    mask_token_id: int
    gen_start: int  # first canvas column of the generation region
    gen_length: int
    generator: torch.Generator | None
    config: Any  # DiffusionGenerationConfig
    step: int = 0  # decoding steps (forward passes of the conditional model) done so far
    extra: dict = field(default_factory=dict)
    filled: torch.BoolTensor | None = (
        None  # (B, L) positions committed as early-exit filler (no model choice)
    )

    @property
    def masked(self) -> torch.BoolTensor:
        return (self.x == self.mask_token_id) & self.fillable


@dataclass
class StepPlan:
    """One step's request. `rows`: positions that need a candidate token (the LM head runs there
    only). `commit`: positions to commit, when the choice does not depend on the model's scores;
    otherwise `None`, and `Strategy.select` chooses after scoring (with budget `k` per row, if set).
    `window`: the step's active window, (L,) canvas columns of every block the step may commit into (the
    same for every row, a superset of `rows`' columns); a KV cache recomputes these columns (dual) or
    everything from the first of them (prefix), and refreshes when the window moves (docs/caching.md).
    `None`: the strategy has no blocks. Strategies that keep state between `plan` and `select` subclass
    this dataclass and put it there."""

    rows: torch.BoolTensor
    commit: torch.BoolTensor | None = None
    k: torch.LongTensor | None = None
    window: torch.BoolTensor | None = None


class Strategy(ABC):
    """Base class. Subclasses set `name`, implement `plan`, and override `select` when the default
    (the `k` best scores per row) is not the rule."""

    name: ClassVar[str] = ""
    #: which score `select` ranks by: "confidence", "margin", "entropy", or None (no model score needed)
    score_kind: str | None = "confidence"
    #: whether scores come from the tempered / filtered distribution (Dream) or the raw logits (LLaDA)
    tempered_scores: bool = False

    def __init__(self, config):
        self.config = config

    def begin(self, state: DecodeState) -> None:  # noqa: B027 (optional hook)
        """Called once before the first step."""

    def check_cache(self) -> None:
        """Raise a `ValueError` naming the fix when this strategy, under its config, declares no active window
        (`StepPlan.window`), which a KV cache needs. Block-wise strategies override it."""
        raise ValueError(
            f"strategy={self.name!r} has no blocks, so it cannot use cache_implementation="
            f"{self.config.cache_implementation!r}: use a block-wise strategy ('confidence', 'ar', 'random', "
            "'threshold', 'factor' with block_length=..., or 'parallel_forced' with block_length=...), or "
            "cache_implementation=None."
        )

    @abstractmethod
    def plan(self, state: DecodeState) -> StepPlan | None:
        """The next step's request, or `None` when decoding is finished."""

    def select(self, state: DecodeState, plan: StepPlan, scores: torch.Tensor) -> torch.BoolTensor:
        """Choose the positions to commit. `scores` is (B, L), -inf where `plan.rows` is False."""
        return topk_mask(scores, plan.k)


STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available as `generate(strategy=cls.name)`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name` to be registered.")
    STRATEGIES[cls.name] = cls
    return cls


def llada_num_transfer_tokens(num_masked: torch.LongTensor, steps: int) -> torch.LongTensor:
    """LLaDA's per-step budget: `n` masked tokens over `steps` steps gives `n // steps` per step and one
    more in the first `n % steps` steps. (B,) -> (B, steps)."""
    base = (num_masked // steps)[:, None]
    rem = (num_masked % steps)[:, None]
    idx = torch.arange(steps, device=num_masked.device)[None, :]
    return base + (idx < rem).long()


def topk_mask(scores: torch.Tensor, k: torch.LongTensor) -> torch.BoolTensor:
    """Boolean (B, L) mask of the `k[b]` highest `scores[b]` (k may differ per row)."""
    kmax = int(k.max()) if k.numel() else 0
    out = torch.zeros_like(scores, dtype=torch.bool)
    if kmax == 0:
        return out
    idx = torch.topk(scores, kmax, dim=-1).indices  # (B, kmax), best first
    keep = torch.arange(kmax, device=scores.device)[None, :] < k[:, None]
    out.scatter_(1, idx, keep)
    return out
