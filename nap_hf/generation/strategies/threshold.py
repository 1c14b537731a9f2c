"""Fast-dLLM's parallel rules, inside the current block until it is full (NFE is adaptive):

* `threshold`: commit the top-1 candidate and every other candidate whose confidence is >= `threshold`;
* `factor`: commit the n best candidates such that the n-th has confidence >= 1 - `factor` / (n + 1),
  at least one.

On the structured (NAP) canvas each slot is a block."""

from __future__ import annotations

import torch

from .base import DecodeState, StepPlan, register_strategy, topk_mask
from .blockwise import BlockScheduledStrategy

__all__ = ["ThresholdStrategy", "FactorStrategy"]


@register_strategy
class ThresholdStrategy(BlockScheduledStrategy):
    name = "threshold"
    score_kind = "confidence"
    fixed_steps = False  # a block takes as many steps as it needs
    slots_are_blocks = True
    reference_block_length = 32  # Fast-dLLM's block length (LLaDA and Dream)

    def check_config(self) -> None:
        super().check_config()
        self.check_rule()

    def check_rule(self) -> None:
        """The commit rule's own setting: `threshold` in (0, 1]."""
        if not (0.0 < self.config.threshold <= 1.0):
            raise ValueError(f"threshold must be in (0, 1], got {self.config.threshold!r}.")

    def begin(self, state: DecodeState) -> None:
        super().begin(state)
        slots = [(r.start, r.end) for r in state.regions if r.kind in ("path", "summary")]
        if slots:  # structured canvas: each slot is a block, in canvas order
            self.blocks = slots

    def check_cache(self) -> None:
        if not self.on_nap_canvas(self.config.canvas):  # on the structured canvas the slots are the blocks
            super().check_cache()

    def plan(self, state: DecodeState) -> StepPlan | None:
        if self.block_idx < 0:
            self._enter_block(state)
        while True:
            eligible = state.masked & self.region
            if bool(eligible.any()):
                return StepPlan(rows=eligible, window=self.window)
            if self.block_idx + 1 >= len(self.blocks):
                return None
            self._enter_block(state)

    def select(self, state: DecodeState, plan: StepPlan, scores: torch.Tensor) -> torch.BoolTensor:
        has_rows = plan.rows.any(-1)
        top1 = torch.zeros_like(plan.rows)
        top1.scatter_(1, scores.argmax(-1, keepdim=True), has_rows[:, None])
        return top1 | (plan.rows & (scores >= self.config.threshold))


@register_strategy
class FactorStrategy(ThresholdStrategy):
    """Fast-dLLM's factor rule (`factor=`, default 1.0): the n-th best confidence must reach
    1 - factor / (n + 1). Sorted confidences fall while the bar rises, so the n committed are the longest run
    of best candidates that clear their bars (at least the top-1)."""

    name = "factor"

    def check_rule(self) -> None:
        """The commit rule's own setting: `factor` > 0."""
        factor = self.config.factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
            raise ValueError(f"factor must be a number > 0 (Fast-dLLM uses 1.0), got {factor!r}.")

    def select(self, state: DecodeState, plan: StepPlan, scores: torch.Tensor) -> torch.BoolTensor:
        ranked = scores.sort(-1, descending=True).values  # (B, L), -inf outside plan.rows
        n = torch.arange(1, scores.shape[1] + 1, device=scores.device, dtype=scores.dtype)
        clears = ranked >= 1 - float(self.config.factor) / (n + 1)
        count = clears.long().cumprod(-1).sum(-1).clamp(min=1)  # (B,)
        return topk_mask(scores, torch.where(plan.rows.any(-1), count, 0)) & plan.rows
