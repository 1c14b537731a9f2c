"""SeqDep (NAP paper §3.3, Eq. 4; docs/design.md §5): how much a causal LM's log-probability of each output
segment gains from the segments before it, averaged over segments 2..N.

    SeqDep(x, s) = 1/(N-1) Σ_{n=2..N} [ log p_AR(s_n | x, s_<n) - log p_AR(s_n | x) ]

with ``log p`` the SUM of the token log-probabilities (natural log, nats) of segment n. Near 0: each segment
is predictable from the prompt alone (parallel-friendly); large: a chain, each step dictated by the ones
before it.

    from nap_hf.metrics import SeqDepScorer, binned_seqdep

    scorer = SeqDepScorer(model, tokenizer, batch_size=16)        # any causal LM (AutoModelForCausalLM)
    out = scorer.score(texts, prompts, segments="lines")           # "steps", "sentences", "nap_paths", ...
    out.mean, out[0].seqdep, out[0].deltas, out[0].num_tokens
    binned = binned_seqdep(out.lengths, out.seqdeps, bins=10)      # the Figure 3 / 7 view

One module per concern, each with its rules in its docstring:

- :mod:`.segment`: how an output is cut into :class:`Segment` pieces ``lead + text + tail`` (modes
  ``"lines"``, ``"steps"``, ``"sentences"``, ``"nap_paths"``, a callable, explicit lists).
- :mod:`.plan`: the typed, frozen :class:`ScoringPlan` (token rows, the span of every term, truncation,
  batches), built from token ids without a model; ``SeqDepScorer.plan(...)`` returns it.
- :mod:`.scorer`: tokenization, the causal-LM check (read from the model's config) and the forward
  passes; :class:`SeqDepScorer` and :func:`seqdep`.
- :mod:`.results`: :class:`SeqDepResult` per example and :class:`SeqDepOutput` (mean, counts).
- :mod:`.binning`: :func:`binned_seqdep`, mean SeqDep per length bin.

An example with N < 2 segments (after truncation) has ``seqdep = nan``, is counted in
:attr:`SeqDepOutput.num_skipped` and left out of the mean. The offline SmolLM2 scorer lives in
:mod:`nap_hf.testing.smollm2`.
"""

from __future__ import annotations

import warnings
from typing import Any

from .binning import BinnedSeqDep, binned_seqdep
from .plan import (
    SKIP_FEW_SEGMENTS,
    SKIP_TOO_LONG,
    ExamplePlan,
    PlanSettings,
    PreparedExample,
    Row,
    ScoringPlan,
    SegmentIds,
    Span,
    Term,
    plan_scoring,
)
from .results import SeqDepOutput, SeqDepResult
from .scorer import SeqDepScorer, not_causal_reason, seqdep
from .segment import SEGMENT_MODES, Segment, SegmentMode, SegmentsArg, split_segments

__all__ = [
    "Segment",
    "SegmentMode",
    "split_segments",
    "SeqDepResult",
    "SeqDepOutput",
    "SeqDepScorer",
    "seqdep",
    "BinnedSeqDep",
    "binned_seqdep",
    "ScoringPlan",
    "ExamplePlan",
    "PlanSettings",
    "PreparedExample",
    "SegmentIds",
    "Row",
    "Span",
    "Term",
    "plan_scoring",
    "not_causal_reason",
    "SEGMENT_MODES",
    "SKIP_FEW_SEGMENTS",
    "SKIP_TOO_LONG",
    "SegmentsArg",
]

_MOVED = ("find_smollm2_gguf", "load_smollm2")


def moved_to_testing(module: str, name: str) -> Any:
    """The SmolLM2 finder and loader moved to :mod:`nap_hf.testing.smollm2`; their old import paths
    (``module``) still work, with a DeprecationWarning."""
    if name not in _MOVED:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(
        f"`{module}.{name}` moved to `nap_hf.testing.smollm2.{name}`. Fix: import it from there.",
        DeprecationWarning,
        stacklevel=3,
    )
    from ...testing import smollm2

    return getattr(smollm2, name)


def __getattr__(name: str) -> Any:
    return moved_to_testing(__name__, name)
