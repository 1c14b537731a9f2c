"""Decoding strategies: one small class per rule, registered by name for `generate(strategy=...)`."""

from .base import (
    STRATEGIES,
    DecodeState,
    StepPlan,
    Strategy,
    llada_num_transfer_tokens,
    register_strategy,
    strategy_class,
    topk_mask,
    uses_nap_canvas,
)
from .blockwise import ARStrategy, BlockScheduledStrategy, ConfidenceStrategy, RandomStrategy
from .dream import DREAM_ALGS, DreamStrategy
from .parallel_forced import ParallelForcedStrategy, allocate_budget, split_steps
from .threshold import FactorStrategy, ThresholdStrategy

__all__ = [
    "STRATEGIES",
    "DecodeState",
    "StepPlan",
    "Strategy",
    "register_strategy",
    "strategy_class",
    "uses_nap_canvas",
    "llada_num_transfer_tokens",
    "topk_mask",
    "ARStrategy",
    "BlockScheduledStrategy",
    "ConfidenceStrategy",
    "RandomStrategy",
    "ThresholdStrategy",
    "FactorStrategy",
    "ParallelForcedStrategy",
    "allocate_budget",
    "split_steps",
    "DreamStrategy",
    "DREAM_ALGS",
]
