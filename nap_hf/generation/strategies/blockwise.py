"""Budgeted strategies on LLaDA's block schedule: `ar` (leftmost first), `confidence` (arbitrary
order, best score first; LLaDA's `low_confidence`) and `random`. Each block gets `steps / n_blocks`
steps and LLaDA's per-step budget; only the current block is eligible."""

from __future__ import annotations

import torch

from .base import (
    DecodeState,
    StepPlan,
    Strategy,
    _names,
    llada_num_transfer_tokens,
    register_strategy,
    topk_mask,
)

__all__ = ["BlockScheduledStrategy", "ARStrategy", "ConfidenceStrategy", "RandomStrategy"]


class BlockScheduledStrategy(Strategy):
    """Walks the blocks of the generation region left to right with LLaDA's step budget. Steps whose
    budget is zero in every row are skipped (they would be idle forward passes)."""

    uses_blocks = True

    def begin(self, state: DecodeState) -> None:
        block = self.config.block_length or state.gen_length
        self.blocks = [
            (state.gen_start + s, state.gen_start + min(s + block, state.gen_length))
            for s in range(0, state.gen_length, block)
        ]
        self.steps_per_block = max(1, self.config.steps // len(self.blocks))
        self.block_idx = -1
        self.step_in_block = self.steps_per_block  # forces _enter_block on the first call

    def _enter_block(self, state: DecodeState) -> None:
        self.block_idx += 1
        self.step_in_block = 0
        lo, hi = self.blocks[self.block_idx]
        region = torch.zeros_like(state.fillable)
        region[:, lo:hi] = True
        if self.block_idx == 0:  # masks inside the prompt (infilling) are decoded with the first block
            region[:, : state.gen_start] = True
        self.region = region & state.fillable
        self.window = self.region.any(0)  # (L,) the block's columns (and prompt masks in the first block)
        self.budget = llada_num_transfer_tokens((state.masked & self.region).sum(-1), self.steps_per_block)

    def plan(self, state: DecodeState) -> StepPlan | None:
        while True:
            if self.step_in_block >= self.steps_per_block:
                if self.block_idx + 1 >= len(self.blocks):
                    return None
                self._enter_block(state)
            k = self.budget[:, self.step_in_block]
            self.step_in_block += 1
            eligible = state.masked & self.region & (k > 0)[:, None]
            if bool(eligible.any()):
                plan = self.plan_step(state, eligible, k)
                plan.window = self.window
                return plan

    def plan_step(self, state: DecodeState, eligible: torch.BoolTensor, k: torch.LongTensor) -> StepPlan:
        return StepPlan(rows=eligible, k=k)

    def check_cache(self) -> None:
        if self.config.block_length is None:
            where = (
                "on canvas='nap' it decodes every slot as one region: use a strategy for which each slot is a "
                f"block ({_names(lambda c: c.slots_are_blocks)}) or one that decodes the structured canvas "
                f"itself with block_length= ({_names(lambda c: c.canvas == 'nap' and c.uses_blocks)})"
                if self.on_nap_canvas(self.config.canvas)
                else "pass block_length= (e.g. 32; it must divide gen_length)"
            )
            raise ValueError(
                f"cache_implementation={self.config.cache_implementation!r} needs blocks, and "
                f"strategy={self.name!r} has none without block_length: {where}."
            )


@register_strategy
class ConfidenceStrategy(BlockScheduledStrategy):
    """Arbitrary order (AO): commit the `k` masked positions with the best score (`score=` one of
    "confidence", "margin", "entropy"), anywhere in the current block."""

    name = "confidence"
    ranks_by_score = True


@register_strategy
class ARStrategy(BlockScheduledStrategy):
    """Autoregressive order: commit the `k` leftmost masked positions. The choice needs no scores, so
    the LM head runs on the committed positions only."""

    name = "ar"
    score_kind = None

    def plan_step(self, state: DecodeState, eligible: torch.BoolTensor, k: torch.LongTensor) -> StepPlan:
        L = eligible.shape[1]
        leftness = torch.arange(L, 0, -1, device=eligible.device, dtype=torch.float32).expand_as(eligible)
        commit = topk_mask(leftness.masked_fill(~eligible, float("-inf")), k)
        return StepPlan(rows=commit, commit=commit)


@register_strategy
class RandomStrategy(BlockScheduledStrategy):
    """Random order: commit `k` uniformly chosen masked positions (LLaDA's `remasking="random"`). The
    choice needs no scores, so the LM head runs on the committed positions only."""

    name = "random"
    score_kind = None

    @classmethod
    def is_stochastic(cls, config) -> bool:
        return True  # the order itself is drawn

    def plan_step(self, state: DecodeState, eligible: torch.BoolTensor, k: torch.LongTensor) -> StepPlan:
        u = torch.rand(eligible.shape, device=eligible.device, generator=state.generator)
        commit = topk_mask(u.masked_fill(~eligible, float("-inf")), k)
        return StepPlan(rows=commit, commit=commit)
