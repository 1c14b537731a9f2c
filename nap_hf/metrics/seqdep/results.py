"""Results of SeqDep scoring: :class:`SeqDepResult` per example, :class:`SeqDepOutput` for many, built from a
:class:`~nap_hf.metrics.seqdep.plan.ScoringPlan` and the summed log-probability of each of its terms."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .plan import SKIP_TOO_LONG, ScoringPlan, Term

__all__ = ["SeqDepResult", "SeqDepOutput"]


@dataclass
class SeqDepResult:
    """SeqDep of one example.

    Attributes:
        seqdep: Eq. 4 in nats (``nan`` when skipped).
        num_segments: N, the segments scored (after truncation).
        num_tokens: the output's length in scorer tokens (all segments with leads and tails, before
            truncation): the x axis of Figures 3 and 7.
        deltas: ``logp_conditional[i] - logp_independent[i]`` for segments n = 2..N (N-1 values).
        logp_conditional: ``log p(s_n | x, s_<n)`` for n = 2..N.
        logp_independent: ``log p(s_n | x)`` for n = 2..N.
        segment_tokens: scored tokens of every segment n = 1..N.
        num_segments_total: segments before truncation.
        truncated: trailing segments were dropped to fit ``max_length``.
        skipped: None, ``"fewer_than_2_segments"`` or ``"too_long"``.
    """

    seqdep: float
    num_segments: int
    num_tokens: int
    deltas: list[float] = field(default_factory=list)
    logp_conditional: list[float] = field(default_factory=list)
    logp_independent: list[float] = field(default_factory=list)
    segment_tokens: list[int] = field(default_factory=list)
    num_segments_total: int = 0
    truncated: bool = False
    skipped: str | None = None

    @property
    def valid(self) -> bool:
        """True when the example has a SeqDep value (N >= 2)."""
        return self.skipped is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``nan`` becomes None)."""
        d = dataclasses.asdict(self)
        d["seqdep"] = None if math.isnan(self.seqdep) else self.seqdep
        return d


@dataclass
class SeqDepOutput:
    """SeqDep of many examples (iterable, indexable like a list of :class:`SeqDepResult`).

    Attributes:
        results: one result per example, in input order.
        mean: unweighted mean SeqDep over the valid examples (``nan`` when none is valid).
        num_valid: examples with a value.
        num_skipped: examples without a value: fewer than 2 segments, or too long.
        num_too_long: of those, the examples that did not fit ``max_length`` (with ``truncation="skip"``, or
            when not even two segments fit).
        num_truncated: examples scored with trailing segments dropped.
    """

    results: list[SeqDepResult]
    mean: float
    num_valid: int
    num_skipped: int
    num_too_long: int
    num_truncated: int

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> SeqDepResult:
        return self.results[i]

    def __iter__(self) -> Iterator[SeqDepResult]:
        return iter(self.results)

    @property
    def seqdeps(self) -> list[float]:
        """Per-example SeqDep (``nan`` for skipped examples)."""
        return [r.seqdep for r in self.results]

    @property
    def lengths(self) -> list[int]:
        """Per-example output length in scorer tokens."""
        return [r.num_tokens for r in self.results]

    @classmethod
    def from_plan(cls, plan: ScoringPlan, logp: Mapping[Term, float]) -> SeqDepOutput:
        """Assemble the results of ``plan`` from ``logp``, the summed log-probability of every term."""
        results = []
        for e, ex in enumerate(plan.examples):
            cond = [logp[t] for t in ex.terms(e, conditional=True)]
            ind = [logp[t] for t in ex.terms(e, conditional=False)]
            deltas = [c - i for c, i in zip(cond, ind, strict=True)]
            results.append(
                SeqDepResult(
                    seqdep=float(sum(deltas) / len(deltas)) if ex.skipped is None else math.nan,
                    num_segments=ex.num_segments,
                    num_tokens=ex.num_tokens,
                    deltas=deltas,
                    logp_conditional=cond,
                    logp_independent=ind,
                    segment_tokens=list(ex.segment_tokens),
                    num_segments_total=ex.num_segments_total,
                    truncated=ex.truncated,
                    skipped=ex.skipped,
                )
            )
        valid = [r.seqdep for r in results if r.valid]
        return cls(
            results=results,
            mean=float(np.mean(valid)) if valid else math.nan,
            num_valid=len(valid),
            num_skipped=len(results) - len(valid),
            num_too_long=sum(r.skipped == SKIP_TOO_LONG for r in results),
            num_truncated=sum(r.truncated for r in results),
        )
