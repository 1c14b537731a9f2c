"""Fast-dLLM's threshold rule: inside the current block, commit the top-1 candidate and every other
candidate whose confidence is >= `threshold`; repeat until the block is full. NFE is adaptive.
On the structured (NAP) canvas each slot is a block."""

from __future__ import annotations

import torch

from .base import DecodeState, StepPlan, register_strategy
from .blockwise import BlockScheduledStrategy

__all__ = ["ThresholdStrategy"]


@register_strategy
class ThresholdStrategy(BlockScheduledStrategy):
    name = "threshold"
    score_kind = "confidence"

    def begin(self, state: DecodeState) -> None:
        super().begin(state)
        slots = [(r.start, r.end) for r in state.extra.get("regions", ()) if r.kind in ("path", "summary")]
        if slots:  # structured canvas: each slot is a block, in canvas order
            self.blocks = slots

    def plan(self, state: DecodeState) -> StepPlan | None:
        if self.block_idx < 0:
            self._enter_block(state)
        while True:
            eligible = state.masked & self.region
            if bool(eligible.any()):
                return StepPlan(rows=eligible)
            if self.block_idx + 1 >= len(self.blocks):
                return None
            self._enter_block(state)

    def select(self, state: DecodeState, plan: StepPlan, scores: torch.Tensor) -> torch.BoolTensor:
        has_rows = plan.rows.any(-1)
        top1 = torch.zeros_like(plan.rows)
        top1.scatter_(1, scores.argmax(-1, keepdim=True), has_rows[:, None])
        return top1 | (plan.rows & (scores >= self.config.threshold))
