"""Metrics for diffusion-LM decoding and data: AR-ness of the decoding order (§3.2) and SeqDep, the
sequential dependence of a text under a causal LM scorer (§3.3, Eq. 4)."""

from .arness import ARnessResult, commit_order, global_arness, local_arness
from .seqdep import (
    BinnedSeqDep,
    Segment,
    SeqDepOutput,
    SeqDepResult,
    SeqDepScorer,
    binned_seqdep,
    find_smollm2_gguf,
    load_smollm2,
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
    "find_smollm2_gguf",
    "load_smollm2",
    "seqdep",
    "split_segments",
]
