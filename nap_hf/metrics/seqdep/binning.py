"""SeqDep binned by output length: the view of the paper's Figures 3 and 7 (mean SeqDep per length bin, with
counts and standard errors)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._checks import check_int

__all__ = ["BinnedSeqDep", "binned_seqdep"]


@dataclass
class BinnedSeqDep:
    """SeqDep binned by output length (Figures 3 and 7).

    Attributes:
        edges: bin edges (``len(centers) + 1``); bin i is ``[edges[i], edges[i+1])``, the last one closed.
        centers: bin centres.
        mean: mean SeqDep per bin (``nan`` for bins with fewer than ``min_count`` values).
        count: values per bin.
        stderr: standard error of the mean (sample std / sqrt(count); ``nan`` below 2 values).
    """

    edges: list[float]
    centers: list[float]
    mean: list[float]
    count: list[int]
    stderr: list[float]

    def to_dict(self) -> dict[str, list]:
        """JSON-friendly dict (``nan`` becomes None)."""
        return {
            k: [None if isinstance(v, float) and math.isnan(v) else v for v in getattr(self, k)]
            for k in ("edges", "centers", "mean", "count", "stderr")
        }


def _edges(lengths: np.ndarray, bins: int | Sequence[float]) -> np.ndarray:
    """``bins`` equal-width bins over the range of ``lengths`` (a unit range around a single value), or
    the given edges, checked."""
    if isinstance(bins, bool):
        raise ValueError(f"`bins` must be an int >= 1 or a list of increasing edges, got {bins!r}.")
    if isinstance(bins, int):
        check_int(bins, "bins")
        if lengths.size == 0:
            return np.linspace(0.0, 1.0, bins + 1)
        lo, hi = float(lengths.min()), float(lengths.max())
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        return np.linspace(lo, hi, bins + 1)
    edges = np.asarray(bins, dtype=np.float64).reshape(-1)
    if edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
        raise ValueError(f"`bins` as edges must hold >= 2 increasing finite numbers, got {list(bins)!r}.")
    return edges


def binned_seqdep(
    lengths: Sequence[float],
    values: Sequence[float],
    bins: int | Sequence[float] = 10,
    *,
    min_count: int = 1,
) -> BinnedSeqDep:
    """Mean SeqDep per length bin.

    Args:
        lengths: per-example output length (e.g. :attr:`SeqDepOutput.lengths`).
        values: per-example SeqDep; ``nan`` (skipped examples) is ignored.
        bins: the number of equal-width bins over the range of the (valid) lengths, or explicit increasing
            edges (values outside them are ignored).
        min_count: bins with fewer values get ``mean = nan`` (their count is still reported).
    """
    lengths_a = np.asarray(lengths, dtype=np.float64).reshape(-1)
    values_a = np.asarray(values, dtype=np.float64).reshape(-1)
    if lengths_a.shape != values_a.shape:
        raise ValueError(
            f"`lengths` ({lengths_a.size}) and `values` ({values_a.size}) must have the same length."
        )
    check_int(min_count, "min_count")
    ok = np.isfinite(values_a) & np.isfinite(lengths_a)
    lengths_a, values_a = lengths_a[ok], values_a[ok]
    edges = _edges(lengths_a, bins)
    inside = (lengths_a >= edges[0]) & (lengths_a <= edges[-1])
    lengths_a, values_a = lengths_a[inside], values_a[inside]
    idx = np.clip(np.searchsorted(edges, lengths_a, side="right") - 1, 0, edges.size - 2)
    means, counts, errs = [], [], []
    for b in range(edges.size - 1):
        v = values_a[idx == b]
        counts.append(int(v.size))
        means.append(float(v.mean()) if v.size >= min_count and v.size else math.nan)
        errs.append(float(v.std(ddof=1) / math.sqrt(v.size)) if v.size >= 2 else math.nan)
    return BinnedSeqDep(
        edges=[float(e) for e in edges],
        centers=[float(c) for c in (edges[:-1] + edges[1:]) / 2],
        mean=means,
        count=counts,
        stderr=errs,
    )
