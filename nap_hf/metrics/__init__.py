"""Metrics for diffusion-LM decoding and data: AR-ness of the decoding order (NAP paper §3.2; docs/design.md
§4) and SeqDep, the sequential dependence of a text under a causal LM scorer (paper §3.3, Eq. 4; docs/design.md
§5; the package :mod:`nap_hf.metrics.seqdep`)."""

from typing import Any

from .arness import ARnessResult, commit_order, global_arness, local_arness
from .seqdep import (
    BinnedSeqDep,
    Segment,
    SeqDepOutput,
    SeqDepResult,
    SeqDepScorer,
    binned_seqdep,
    moved_to_testing,
    seqdep,
    split_segments,
)

__all__ = [
    "ARnessResult",
    "commit_order",
    "global_arness",
    "local_arness",
    "BinnedSeqDep",
    "Segment",
    "SeqDepOutput",
    "SeqDepResult",
    "SeqDepScorer",
    "binned_seqdep",
    "seqdep",
    "split_segments",
]


def __getattr__(name: str) -> Any:
    """`find_smollm2_gguf` / `load_smollm2` moved to nap_hf.testing.smollm2 (old path kept, deprecated)."""
    return moved_to_testing(__name__, name)
