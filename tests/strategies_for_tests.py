"""Strategies defined only in the tests, to show that a strategy registered outside `nap_hf/` runs
everywhere (`generate`, the KV cache, the evaluation runner, the lm-eval model, the property suite) with
nothing in the package naming it. Use `with registered(): ...` so the registry is left as it was."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from nap_hf.generation.strategies import STRATEGIES, DecodeState, StepPlan, Strategy, register_strategy

__all__ = ["LeftToRight", "TEST_STRATEGIES", "registered"]


class LeftToRight(Strategy):
    """Written from the base class: each step commits the leftmost masked position of every row (no model
    score needed). It declares blocks (`block_length` = its active window, for a KV cache) and adaptive steps
    (it takes one step per position whatever `steps` says). With `steps = gen_length` it decodes as `ar`."""

    name = "tests_left_to_right"
    uses_blocks = True
    fixed_steps = False
    score_kind = None

    def plan(self, state: DecodeState) -> StepPlan | None:
        masked = state.masked  # (B, L)
        has = masked.any(-1)  # (B,)
        if not bool(has.any()):
            return None
        rows = torch.arange(masked.shape[0], device=masked.device)[has]
        first = masked.long().argmax(-1)[has]  # leftmost masked column of each unfinished row
        commit = torch.zeros_like(masked)
        commit[rows, first] = True
        return StepPlan(rows=commit, commit=commit, window=self._window(state, first, commit))

    def _window(self, state: DecodeState, first: torch.LongTensor, commit: torch.BoolTensor):
        """(L,) the blocks holding this step's columns (and the columns themselves), or None without blocks."""
        block = self.config.block_length
        if not block:
            return None
        cols = torch.arange(commit.shape[1], device=commit.device)
        block_of = torch.div(cols - state.gen_start, block, rounding_mode="floor")  # (L,), < 0 in the prompt
        current = (block_of[None, :] == block_of[first][:, None]).any(0) & (cols >= state.gen_start)
        return current | commit.any(0)

    def check_cache(self) -> None:
        if not self.config.block_length:
            super().check_cache()


TEST_STRATEGIES: tuple[type[Strategy], ...] = (LeftToRight,)


@contextmanager
def registered() -> Iterator[None]:
    """Register the test strategies for the duration of the block, then restore the registry."""
    saved = dict(STRATEGIES)
    for cls in TEST_STRATEGIES:
        register_strategy(cls)
    try:
        yield
    finally:
        STRATEGIES.clear()
        STRATEGIES.update(saved)
